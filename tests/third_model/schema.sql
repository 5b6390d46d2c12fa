-- The third model: the reference schema (cutover/model/schema.sql, which runs first) changed the ways
-- operators' schemas differ from it (issue 23). Its plan is plan.toml beside this file; its rows are
-- the reference generator's, under the names below.

-- Tenant-keyed foreign keys, one of each kind the cutover moves rows under: no row may point at
-- another tenant's parent. A NOT DEFERRABLE one is a blocker (tests/test_third_model.py makes one).
ALTER TABLE patients ADD CONSTRAINT patients_tenant_id_key UNIQUE (tenant_id, id);
ALTER TABLE cases ADD CONSTRAINT cases_tenant_id_key UNIQUE (tenant_id, id);
ALTER TABLE cases ADD CONSTRAINT cases_tenant_patient_fkey FOREIGN KEY (tenant_id, patient_id)
    REFERENCES patients (tenant_id, id) ON UPDATE CASCADE DEFERRABLE;
ALTER TABLE messages ADD CONSTRAINT messages_tenant_case_fkey FOREIGN KEY (tenant_id, case_id)
    REFERENCES cases (tenant_id, id) DEFERRABLE INITIALLY IMMEDIATE;

-- A key that holds the tenant column.
ALTER TABLE messages DROP CONSTRAINT messages_pkey, ADD PRIMARY KEY (tenant_id, id);

-- A table outside public (its RLS policy and grants go with it), with a tenant key back into public.
CREATE SCHEMA clinical;
ALTER TABLE match_requests SET SCHEMA clinical;
ALTER TABLE clinical.match_requests ADD CONSTRAINT match_requests_tenant_case_fkey FOREIGN KEY (tenant_id, case_id)
    REFERENCES public.cases (tenant_id, id) DEFERRABLE INITIALLY DEFERRED;

-- A name that needs quoting: capitals and a space.
ALTER TABLE document_references RENAME TO "Document References";
ALTER TABLE "Document References" ADD CONSTRAINT documents_tenant_patient_fkey FOREIGN KEY (tenant_id, patient_id)
    REFERENCES patients (tenant_id, id) ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED;

-- A materialized view per tenant: the plan's [refresh] has the cutover refresh it after the moves.
CREATE MATERIALIZED VIEW case_counts AS SELECT tenant_id, count(*) AS cases FROM cases GROUP BY tenant_id;

-- Rows that triggers write: an audit trail kept by the application, every UPDATE of a message recorded
-- (the row's new tenant, the table, the row's key) by a plpgsql trigger into a tenant-scoped table
-- outside public with a name that needs quoting. The cutover's move of messages is such an UPDATE:
-- plan.toml declares the trigger with `written_by`, so the cutover expects one row per moved message.
CREATE SCHEMA audit;
CREATE TABLE audit."Message Changes" (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES public.tenants (id),
    table_name text NOT NULL,
    row_id text NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON audit."Message Changes" (tenant_id);
ALTER TABLE audit."Message Changes" ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit."Message Changes" FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit."Message Changes"
    USING (tenant_id = current_setting('app.tenant_id', true));
CREATE FUNCTION audit.messages_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit."Message Changes" (tenant_id, table_name, row_id) VALUES (NEW.tenant_id, TG_TABLE_NAME, NEW.id);
    RETURN NEW;
END $$;
CREATE TRIGGER messages_audit AFTER UPDATE ON messages FOR EACH ROW EXECUTE FUNCTION audit.messages_audit();

-- The owner role under FORCE ROW LEVEL SECURITY is not part of a dump (snapshots are taken with
-- --no-owner): tests/third_model.owned_by_a_forced_role hands the tables to one after the restore.
