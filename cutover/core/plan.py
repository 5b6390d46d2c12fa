"""The plan: the suite's only source of schema-specific knowledge.

Checks, cutover and sweep take table names, ownership rules and classifications from here, so an
operator adapts the suite to a real schema by editing one TOML file. Loading validates the whole
file up front: a typo in the plan must stop the run before anything touches a database, with the
offending key named.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from psycopg import sql

from cutover.core.errors import PlanError

# The embedded reference model's plan, found through the package so that a plain `pip install .` works.
DEFAULT_PLAN = Path(str(resources.files("cutover.model") / "plan.toml"))

# The plan format this release reads and writes. A plan says which it was written for in
# ``[plan] format``; a plan without it is format 1, written before formats were numbered. An earlier
# format loads with the defaults of the keys added since (``ADDED_SINCE``), so an operator's rehearsed
# plan keeps working across an upgrade; docs/plan.md lists them.
PLAN_FORMAT = 3
# Keys added in a format, with the value a plan of an earlier format gets: (format, section, key) -> value.
ADDED_SINCE: Mapping[tuple[int, str, str], str] = MappingProxyType({
    (2, "audit", "allow_list_part"): "cutover.allow_list_part",  # classified 'system' along with it
})
# The [features] section came in format 3. An earlier plan gets the reference schema's features (every
# one present, its tables found from the plan itself: Features.of_earlier), so it behaves as before.
FEATURES_SINCE = 3
VERSION_KINDS = ("alembic", "rails", "none")

# [audit] own = true: the cutover's own table, its columns, and the event types' names unless the plan
# renames them (they need no classification: no application reads that table).
OWN_AUDIT_TABLE = "cutover.audit_events"
OWN_AUDIT = MappingProxyType({"key": "id", "type_column": "event_type", "payload_column": "payload",
                              "source_column": "source_service", "source_value": "cutover"})
AUDIT_KINDS = MappingProxyType({"started": "cutover.started", "completed": "cutover.completed",
                                "swept": "cutover.swept", "reversed": "cutover.reversed",
                                "allow_list_part": "cutover.allow_list_part"})

OWNER_KINDS = ("patient", "provider", "column", "classified")
CLASSES = ("patient", "provider", "system")


CROSS_TENANT = ("share", "provider")


class _CrossTenant:
    """What a reference (a column, or a key inside a jsonb value) declares about a parent elsewhere."""

    cross_tenant: str | None

    @property
    def via_share(self) -> bool:
        return self.cross_tenant == "share"


@dataclass(frozen=True)
class Reference(_CrossTenant):
    """A row's pointer to its parent; the row belongs on the parent's tenant unless declared otherwise.

    ``cross_tenant`` is what the plan declares about a parent on another tenant: ``"share"`` (the
    parent is a case shared to the child's tenant, ``via_share = true``), ``"provider"`` (the parent
    may sit on any tenant but the patient tenant, e.g. a patient's appointment with a provider's
    profile), or ``None`` (same tenant only). The pre-flight and A4 allow exactly that, no more.

    ``foreign_key = False`` says the database has no foreign key behind the column, on purpose (a
    Rails ``belongs_to``): ``plan check`` then does not ask for one, and the pre-flight and A4 still
    check every row's parent exists, which no constraint does for it.
    """

    column: str
    table: str
    cross_tenant: str | None = None
    foreign_key: bool = True


@dataclass(frozen=True)
class JsonReference(_CrossTenant):
    """A parent named inside a jsonb value (an idempotency key's cached response naming a case)."""

    column: str
    key: str
    table: str
    cross_tenant: str | None = None


@dataclass(frozen=True)
class Audit:
    """Where the cutover writes its own events, and the (system-classified) types it uses.

    ``own``: the schema has no events table for them, so the cutover keeps them in a table of its
    own (``OWN_AUDIT_TABLE``, created by the first execute; see :mod:`cutover.core.audit`), and the
    column fields describe that table.
    """

    table: str
    key: str
    type_column: str
    payload_column: str
    source_column: str
    source_value: str
    started: str
    completed: str
    swept: str
    reversed: str
    allow_list_part: str
    own: bool = False


@dataclass(frozen=True)
class Straggler:
    """A20-active's synthetic row: where it goes, its fixed values, and the marker that finds it again."""

    table: str
    marker_column: str
    marker_key: str
    marker: str
    now_columns: tuple[str, ...]
    values: Mapping[str, str]


@dataclass(frozen=True)
class Rehearsal:
    """Where the rehearsal reads the values it shows operators, and the straggler it writes."""

    case_table: str
    patient_table: str
    document_table: str
    key_table: str
    key_column: str
    key_route_column: str
    key_response_column: str
    key_case_field: str
    straggler: Straggler


@dataclass(frozen=True)
class Features:
    """What the schema has, as the plan declares it (``[features]``), never as the suite assumes it.

    A check whose subject is declared absent is *not applicable*: named with its reason in the verdict,
    left out of the checks a READY waits for, never counted as passed. So a schema without row-level
    security needs no policies made for the tool, and a schema that has them keeps every check.
    ``share_table``, ``event_table`` and ``idempotency_table`` name the table, or are None (TOML
    ``false``) when the schema has none; an earlier-format plan's "" means "present, not named" (its
    check runs, as before, and fails if the plan lacks the table).
    """

    row_level_security: bool = True
    tenant_settings: bool = True
    tenant_flags: bool = True
    share_table: str | None = ""
    event_table: str | None = ""
    idempotency_table: str | None = ""
    schema_versions: str = "alembic"

    def absent(self) -> dict[str, str]:
        """Each feature declared absent, with the words a reason is made of (``no share table``)."""
        out = {}
        if not self.row_level_security:
            out["row_level_security"] = "no row-level security"
        if not self.tenant_settings:
            out["tenant_settings"] = "no tenant settings to mirror"
        if not self.tenant_flags:
            out["tenant_flags"] = "no active/protected columns on the tenant row"
        for key, words in (("share_table", "no share table"), ("event_table", "no classified event table"),
                           ("idempotency_table", "no idempotency table")):
            if getattr(self, key) is None:
                out[key] = words
        if self.schema_versions == "none":
            out["schema_versions"] = "no version table"
        return out


@dataclass(frozen=True)
class ManualCheck:
    """One operator-executed check: its title and the runbook's steps, as a template."""

    check: str
    title: str
    steps: str


@dataclass(frozen=True)
class WrittenBy:
    """A trigger on a moving table that writes rows into the table declaring it (``written_by =
    ["patients.patients_audit"]``): each move of ``table`` fires it once per moved row, so the
    cutover expects that many new rows in the declaring table instead of rolling back on them."""

    table: str
    trigger: str


@dataclass(frozen=True)
class TableRule:
    """How one tenant-scoped table's rows are owned, and what they point at."""

    name: str
    key: tuple[str, ...]
    owner: str
    column: str | None = None
    patient_values: tuple[str, ...] = ()
    classification: str | None = None
    references: tuple[Reference, ...] = ()
    case_json: JsonReference | None = None
    share_target: str | None = None
    trigger_columns: tuple[str, ...] = ()  # rewritten by a trigger on every UPDATE: content comparisons skip them
    written_by: tuple[WrittenBy, ...] = ()  # triggers on moving tables that insert rows here


@dataclass(frozen=True)
class Plan:
    """A validated plan file."""

    path: Path
    name: str
    schema_head: str
    version_table: str
    version_column: str
    tenant_column: str
    tenant_table: str
    source: str
    target: str
    protected: tuple[str, ...]
    mirrored_settings: tuple[str, ...]
    settings_column: str
    active_column: str
    protected_column: str
    audit: Audit
    app_role: str
    app_privileges: tuple[str, ...]
    tenant_setting: str
    static_tables: tuple[str, ...]
    tables: tuple[TableRule, ...]
    move_steps: tuple[tuple[str, ...], ...]
    classifications: Mapping[str, Mapping[str, str]]
    rehearsal: Rehearsal
    manual: Mapping[str, ManualCheck]
    format: int = PLAN_FORMAT
    # [refresh]: materialized views over moving tables that carry a tenant. Refreshed inside the
    # cutover's transaction after the moves, or acknowledged as holding nothing the cutover changes.
    refresh_views: tuple[str, ...] = ()
    static_views: tuple[str, ...] = ()
    features: Features = Features()
    # (schema, type) of the tenant table's key as the database has it; None until read from the
    # catalog (cutover.core.tenants.typed), which also writes source, target and protected as the
    # database writes that type. Never in the file: the database is the authority on its own types.
    tenant_type: tuple[str, str] | None = None

    @property
    def table_names(self) -> tuple[str, ...]:
        """Tenant-scoped tables in the plan's (cutover) order."""
        return tuple(t.name for t in self.tables)

    @property
    def all_tables(self) -> tuple[str, ...]:
        return self.static_tables + self.table_names

    @property
    def schemas(self) -> tuple[str, ...]:
        """The schemas the plan names tables in (``app`` of ``app.patients``): the catalog reads these
        beside the search path's own schema."""
        names = (*self.all_tables, self.tenant_table, self.version_table, *self.refresh_views, *self.static_views)
        return tuple(sorted({schema for schema, _ in map(split_table, names) if schema is not None}))

    @property
    def moving(self) -> tuple[TableRule, ...]:
        """Tables that hold patient-owned rows (everything but provider-owned tables)."""
        return tuple(t for t in self.tables if t.owner != "provider")

    @property
    def share_table(self) -> TableRule | None:
        """The table whose rows forward a case to another tenant (``share_target`` set)."""
        return next((t for t in self.tables if t.share_target is not None), None)

    def fired(self, moved: Mapping[str, int]) -> dict[str, int]:
        """Rows each table's declared triggers write, given the rows each move moved (one per row)."""
        return {r.name: sum(moved.get(w.table, 0) for w in r.written_by) for r in self.tables if r.written_by}

    def table(self, name: str) -> TableRule:
        for rule in self.tables:
            if rule.name == name:
                return rule
        raise KeyError(name)

    def patient_values(self, rule: TableRule) -> tuple[str, ...]:
        """Values of ``rule.column`` that make a row patient-owned (empty for fixed owners)."""
        if rule.owner == "column":
            return rule.patient_values
        if rule.owner == "classified" and rule.classification is not None:
            mapping = self.classifications[rule.classification]
            return tuple(sorted(v for v, cls in mapping.items() if cls == "patient"))
        return ()


# Every key each part of the plan knows. A key outside them is refused: a typo (``refrences``) would
# otherwise drop a declaration without a word, and the dry run would say READY without it.
SECTIONS = ("plan", "tenants", "roles", "audit", "rehearsal", "manual", "static", "tables", "classification",
            "refresh", "features")
PLAN_KEYS = ("format", "name", "schema_head", "version_table", "version_column", "tenant_column", "move_steps")
TENANTS_KEYS = ("table", "source", "target", "protected", "mirrored_settings", "settings_column", "active_column",
                "protected_column")
ROLES_KEYS = ("app", "app_privileges", "tenant_setting")
STATIC_KEYS = ("tables",)
REFRESH_KEYS = ("materialized_views", "static")
TABLE_KEYS = ("key", "owner", "column", "patient_values", "classification", "references", "case_json",
              "share_target", "trigger_columns", "written_by")
REFERENCE_KEYS = ("column", "table", "via_share", "cross_tenant", "foreign_key")
CASE_JSON_KEYS = ("column", "key", "table", "via_share", "cross_tenant")
STRAGGLER_KEYS = ("table", "marker_column", "marker_key", "marker", "now_columns", "values")
MANUAL_KEYS = ("title", "steps")
FEATURES_KEYS = tuple(Features.__dataclass_fields__)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_string(value: str) -> str:
    """``value`` as a TOML basic string, whatever it holds: a plan (and a fix an operator pastes into
    one) must load with the database's own names, quotes, newlines and non-ASCII included."""
    out = []
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def split_table(name: str) -> tuple[str | None, str]:
    """A plan's table name as (schema, table). ``app.patients`` is table ``patients`` in schema ``app``;
    a name without a dot is a table of the search path's schema (``current_schema()``), as before
    schemas could be named. The name splits at its first dot only, so a table whose own name holds a
    dot is still expressible, written with its schema first: ``public.v1.events``."""
    schema, dot, table = name.partition(".")
    return (schema, table) if dot and schema and table else (None, name)


def table_sql(name: str) -> sql.Identifier:
    """A plan's table name as SQL: ``app.notes`` as the identifier pair (app, notes), a bare name as one
    identifier the search path resolves.
    Every statement that names a plan's table takes it from here, so a schema the plan gives is
    never dropped (and a name is never split at a dot somewhere else)."""
    schema, table = split_table(name)
    return sql.Identifier(schema, table) if schema is not None else sql.Identifier(table)


def table_regclass(name: str) -> str:
    """A plan's table name as ``to_regclass`` reads it (a query parameter, not SQL text): each part
    double-quoted, so case, spaces, quotes and dots stay the name's own."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in split_table(name) if part is not None)


def plan_table_name(schema: str, table: str, current: str | None) -> str:
    """How a plan names the table ``table`` of ``schema`` when the search path's schema is ``current``:
    bare in that schema (unless its own name holds a dot), else qualified (``app.patients``)."""
    return table if schema == current and "." not in table else f"{schema}.{table}"


def toml_key(name: str) -> str:
    """A table name as a TOML key: bare where TOML allows it (``cases``), else quoted (``"Case Notes"``).
    A name written bare with a dot or a newline would name another table, or start a section."""
    return name if _BARE_KEY.fullmatch(name) else toml_string(name)


def _known(section: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    """Refuse the first key the format does not know, naming the nearest known one."""
    for key in section:
        if key in known:
            continue
        near = difflib.get_close_matches(str(key), known, n=1)
        if where == "":
            hint = f"; did you mean [{near[0]}]?" if near else f" (known: {', '.join(known)})"
            raise PlanError(f"plan: unknown section [{key}]{hint}")
        hint = f"; did you mean '{near[0]}'?" if near else f" (known: {', '.join(known)})"
        raise PlanError(f"plan {where}: unknown key '{key}'{hint}")


def _get(section: Mapping[str, Any], key: str, where: str, kind: type, default: Any = ...) -> Any:
    if key not in section:
        if default is not ...:
            return default
        raise PlanError(f"plan {where}: missing key '{key}'")
    value = section[key]
    if not isinstance(value, kind):
        raise PlanError(f"plan {where}.{key}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def _strings(section: Mapping[str, Any], key: str, where: str, default: Any = ...) -> tuple[str, ...]:
    values = _get(section, key, where, list, default)
    if not all(isinstance(v, str) for v in values):
        raise PlanError(f"plan {where}.{key}: expected a list of strings")
    return tuple(values)


def _key(raw: Mapping[str, Any], where: str) -> tuple[str, ...]:
    """``key = "id"`` or ``key = ["case_id", "tag"]`` (a composite primary key, in its column order)."""
    if "key" not in raw:
        raise PlanError(f"plan {where}: missing key 'key'; name the primary key column, or a list of its columns")
    value = raw["key"]
    if isinstance(value, str) and value:
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        if len(set(value)) != len(value):
            raise PlanError(f"plan {where}.key: {value} names a column twice; list each key column once")
        return tuple(value)
    raise PlanError(f"plan {where}.key: expected a column name or a non-empty list of column names, got {value!r}")


def _cross_tenant(raw: Mapping[str, Any], where: str) -> str | None:
    """``via_share = true`` (the original form) or ``cross_tenant = "share" | "provider"``."""
    via_share = _get(raw, "via_share", where, bool, False)
    cross = _get(raw, "cross_tenant", where, str, None)
    if cross is not None and cross not in CROSS_TENANT:
        raise PlanError(f"plan {where}.cross_tenant: '{cross}' is not one of {', '.join(CROSS_TENANT)}; use \"share\" "
                        f"(a case shared to the child's tenant) or \"provider\" (any tenant but the patient tenant)")
    if via_share and cross not in (None, "share"):
        raise PlanError(f"plan {where}: via_share = true contradicts cross_tenant = '{cross}'; keep one of them")
    return "share" if via_share else cross


def _table_rule(name: str, raw: Mapping[str, Any], classifications: Mapping[str, Any]) -> TableRule:
    where = f"[tables.{toml_key(name)}]"
    _known(_get({"t": raw}, "t", where, dict), TABLE_KEYS, where)
    owner = _get(raw, "owner", where, str)
    if owner not in OWNER_KINDS:
        raise PlanError(f"plan {where}.owner: '{owner}' is not one of {', '.join(OWNER_KINDS)}")
    column = _get(raw, "column", where, str, None)
    classification = _get(raw, "classification", where, str, None)
    if owner in ("column", "classified") and column is None:
        raise PlanError(f"plan {where}: owner '{owner}' needs a 'column'")
    patient_values = _strings(raw, "patient_values", where, [])
    if owner == "column" and not patient_values:
        raise PlanError(f"plan {where}: owner 'column' needs 'patient_values'")
    if owner == "classified" and classification not in classifications:
        raise PlanError(f"plan {where}: classification '{classification}' has no [classification.*] table")
    refs = []
    for i, ref in enumerate(_get(raw, "references", where, list, [])):
        at = f"{where}.references[{i}]"
        if not isinstance(ref, dict):
            raise PlanError(f"plan {at}: expected a table like {{ column = \"...\", table = \"...\" }}")
        _known(ref, REFERENCE_KEYS, at)
        refs.append(Reference(_get(ref, "column", at, str), _get(ref, "table", at, str), _cross_tenant(ref, at),
                              _get(ref, "foreign_key", at, bool, True)))
    case_json = None
    if "case_json" in raw:
        cj = _get(raw, "case_json", where, dict)
        _known(cj, CASE_JSON_KEYS, f"{where}.case_json")
        case_json = JsonReference(_get(cj, "column", f"{where}.case_json", str),
                                  _get(cj, "key", f"{where}.case_json", str),
                                  _get(cj, "table", f"{where}.case_json", str),
                                  _cross_tenant(cj, f"{where}.case_json"))
    return TableRule(name=name, key=_key(raw, where), owner=owner, column=column,
                     patient_values=patient_values, classification=classification, references=tuple(refs),
                     case_json=case_json, share_target=_get(raw, "share_target", where, str, None),
                     trigger_columns=_strings(raw, "trigger_columns", where, []),
                     # As written: which table each entry names is known once every table is (_written_by).
                     written_by=tuple(WrittenBy("", w) for w in _strings(raw, "written_by", where, [])))


def _written_by(rule: TableRule, moving: Sequence[str], order: Sequence[str]) -> tuple[WrittenBy, ...]:
    """``written_by = ["patients.patients_audit"]``: each entry a moving table, a dot, its trigger.

    The table is the longest moving table the entry starts with (a quoted name may hold a dot). The
    written table must move after it: its own move then carries none of the trigger's rows, which
    stay where the trigger put them and are counted as written, not moved."""
    where = f"[tables.{toml_key(rule.name)}].written_by"
    out = []
    for raw in rule.written_by:
        entry = raw.trigger
        table = max((n for n in moving if entry.startswith(n + ".") and len(entry) > len(n) + 1), key=len,
                    default=None)
        if table is None:
            raise PlanError(f"plan {where}: {toml_string(entry)} is not \"table.trigger\" with a moving table of the "
                            f"plan (moving: {', '.join(moving)}); write e.g. \"patients.patients_audit\"")
        if table == rule.name:
            raise PlanError(f"plan {where}: {toml_string(entry)} is a trigger on {toml_key(rule.name)} itself; "
                            f"written_by names triggers on other tables that write into this one")
        if rule.name in order and order.index(rule.name) < order.index(table):
            raise PlanError(f"plan {where}: {toml_key(rule.name)} moves before {toml_key(table)}, whose trigger "
                            f"writes it; list {toml_key(rule.name)} in a later [plan].move_steps group")
        out.append(WrittenBy(table, entry[len(table) + 1:]))
    return tuple(out)


def load_plan(path: Path) -> Plan:
    """Read and validate a plan file; every problem is a one-line :class:`PlanError`."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise PlanError(f"plan file {path} not found; pass an existing plan with --plan") from None
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"plan file {path} is not valid TOML ({exc}); fix the file or pass --plan") from None
    return plan_from(raw, path)


def plan_from(raw: Mapping[str, Any], path: Path) -> Plan:
    """Validate a parsed plan file (``path`` says where it came from); every problem is a :class:`PlanError`."""
    _known(raw, SECTIONS, "")
    meta = _get(raw, "plan", "", dict)
    tenants = _get(raw, "tenants", "", dict)
    roles = _get(raw, "roles", "", dict)
    for section, known, where in ((meta, PLAN_KEYS, "[plan]"), (tenants, TENANTS_KEYS, "[tenants]"),
                                  (roles, ROLES_KEYS, "[roles]")):
        _known(section, known, where)
    fmt = _format(meta)
    classifications = _classifications(_get(raw, "classification", "", dict, {}))
    rules = tuple(_table_rule(n, t, classifications) for n, t in _get(raw, "tables", "", dict).items())
    names = {r.name for r in rules}
    _check_references(rules, names)
    steps, rules = _move_steps(meta, rules)
    audit = _audit(_get(raw, "audit", "", dict), fmt, rules, classifications)
    rehearsal = _rehearsal(_get(raw, "rehearsal", "", dict), names)
    manual = _manual(_get(raw, "manual", "", dict))
    static = _get(raw, "static", "", dict)
    _known(static, STATIC_KEYS, "[static]")
    refresh_views, static_views = _refresh(_get(raw, "refresh", "", dict, {}))
    features = _features(raw, fmt, rules, "" if audit.own else audit.table)  # own: no events table
    versions = features.schema_versions != "none"
    settings, flags = features.tenant_settings, features.tenant_flags
    _declared(meta, "[plan]", ("schema_head", "version_table", "version_column"), versions,
              'schema_versions = "none"', 'schema_versions = "alembic" or "rails"')
    _declared(tenants, "[tenants]", ("mirrored_settings", "settings_column"), settings, "tenant_settings = false",
              "tenant_settings = true")
    _declared(tenants, "[tenants]", ("active_column", "protected_column"), flags, "tenant_flags = false",
              "tenant_flags = true")
    return Plan(
        path=path,
        name=_get(meta, "name", "[plan]", str),
        schema_head=_get(meta, "schema_head", "[plan]", str) if versions else "",
        version_table=_get(meta, "version_table", "[plan]", str) if versions else "",
        version_column=_get(meta, "version_column", "[plan]", str) if versions else "",
        tenant_column=_get(meta, "tenant_column", "[plan]", str),
        tenant_table=_get(tenants, "table", "[tenants]", str),
        source=_get(tenants, "source", "[tenants]", str),
        target=_get(tenants, "target", "[tenants]", str),
        protected=_strings(tenants, "protected", "[tenants]"),
        mirrored_settings=_strings(tenants, "mirrored_settings", "[tenants]") if settings else (),
        settings_column=_get(tenants, "settings_column", "[tenants]", str) if settings else "",
        active_column=_get(tenants, "active_column", "[tenants]", str) if flags else "",
        protected_column=_get(tenants, "protected_column", "[tenants]", str) if flags else "",
        audit=audit,
        app_role=_get(roles, "app", "[roles]", str),
        app_privileges=_strings(roles, "app_privileges", "[roles]"),
        tenant_setting=_get(roles, "tenant_setting", "[roles]", str),
        static_tables=_strings(static, "tables", "[static]"),
        tables=rules,
        move_steps=steps,
        classifications=MappingProxyType(classifications),
        rehearsal=rehearsal,
        manual=MappingProxyType(manual),
        format=fmt,
        refresh_views=refresh_views,
        static_views=static_views,
        features=features,
    )


def _classifications(raw: Mapping[str, Any]) -> dict[str, Mapping[str, str]]:
    """``[classification.NAME]`` tables, each value mapped to one of :data:`CLASSES` (a typo there
    would decide where rows go)."""
    classifications: dict[str, Mapping[str, str]] = {}
    for cname, mapping in raw.items():
        for value, cls in mapping.items():
            if cls not in CLASSES:
                raise PlanError(f"plan [classification.{cname}].\"{value}\": '{cls}' is not one of "
                                f"{', '.join(CLASSES)}")
        classifications[cname] = MappingProxyType(dict(mapping))
    return classifications


def _check_references(rules: tuple[TableRule, ...], names: set[str]) -> None:
    """Every table a rule follows is planned and has a single-column key: the moves' joins name one
    column on each side."""
    for rule in rules:
        parents = [ref.table for ref in rule.references] + ([rule.case_json.table] if rule.case_json else [])
        where = f"[tables.{toml_key(rule.name)}]"
        for parent in parents:
            if parent not in names:
                raise PlanError(f"plan {where}: references table '{parent}' that the plan lacks; add "
                                f"[tables.{toml_key(parent)}] (or [static]) or fix the reference")
            if len(next(r for r in rules if r.name == parent).key) != 1:
                raise PlanError(f"plan {where}: references table '{parent}' whose key is composite; a "
                                f"reference names one column holding the parent's single-column key")


def _move_steps(meta: Mapping[str, Any], rules: tuple[TableRule, ...]
                ) -> tuple[tuple[tuple[str, ...], ...], tuple[TableRule, ...]]:
    """``[plan].move_steps``, which must list every moving table once (a table left out would stay on
    the source), and the rules with the tables their moves' triggers write (known from the order)."""
    steps = tuple(tuple(_strings({"s": s}, "s", f"[plan].move_steps[{i}]")) for i, s in
                  enumerate(_get(meta, "move_steps", "[plan]", list)))
    in_steps = [t for s in steps for t in s]
    moving = [r.name for r in rules if r.owner != "provider"]
    if sorted(in_steps) != sorted(moving):
        raise PlanError(f"plan [plan].move_steps must list every non-provider table exactly once "
                        f"(tables: {', '.join(moving)}; steps list: {', '.join(in_steps)})")
    return steps, tuple(replace(r, written_by=_written_by(r, moving, in_steps)) for r in rules)


def _manual(raw: Mapping[str, Any]) -> dict[str, ManualCheck]:
    """``[manual.ID]``: the manual checks' titles and steps as the operator reads them."""
    for c in raw:
        _known(_get(raw, c, "[manual]", dict), MANUAL_KEYS, f"[manual.{c}]")
    return {c: ManualCheck(c, _get(m, "title", f"[manual.{c}]", str), _get(m, "steps", f"[manual.{c}]", str))
            for c, m in raw.items()}


def _refresh(refresh: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``[refresh]``: the materialized views the cutover refreshes and those it leaves; never both,
    which would leave it unsaid whether a view's rows may change."""
    _known(refresh, REFRESH_KEYS, "[refresh]")
    refresh_views = _strings(refresh, "materialized_views", "[refresh]", ())
    static_views = _strings(refresh, "static", "[refresh]", ())
    both = sorted(set(refresh_views) & set(static_views))
    if both:
        raise PlanError(f"plan [refresh]: {', '.join(both)} is both refreshed and static; keep it in "
                        f"materialized_views (the cutover refreshes it) or in static, not both")
    return refresh_views, static_views


def features_toml(features: Features) -> str:
    """``[features]`` as a plan writes it (``plan upgrade``, ``plan draft``): every key, tables by name or false."""
    lines = ["[features]"]
    for key in FEATURES_KEYS:
        value = getattr(features, key)
        if value == "":
            raise PlanError(f"plan [features].{key}: the plan names no such table; declare {key} by hand "
                            f"(a table's name, or false)")
        shown = "false" if value is None else toml_string(value) if isinstance(value, str) else str(value).lower()
        lines.append(f"{key} = {shown}")
    return "\n".join(lines) + "\n"


def _declared(section: Mapping[str, Any], where: str, keys: Sequence[str], present: bool, absent_said: str,
              present_said: str) -> None:
    """Keys that describe a feature the plan declares absent contradict the declaration: refused, naming both."""
    if present:
        return
    given = [k for k in keys if k in section]
    if given:
        raise PlanError(f"plan {where}: {', '.join(given)} given but [features] {absent_said}; remove "
                        f"{'them' if len(given) > 1 else 'it'}, or declare {present_said}")


def _features(raw: Mapping[str, Any], fmt: int, rules: Sequence[TableRule], audit_table: str) -> Features:
    """``[features]``: required from format 3 on (every key: a feature is declared, never assumed); an
    earlier plan gets the reference schema's (everything present, the tables as its plan names them)."""
    shares = [r.name for r in rules if r.share_target is not None]
    keyed = [r.name for r in rules if r.case_json is not None]
    if fmt < FEATURES_SINCE:
        if "features" in raw:
            raise PlanError(f"plan [features]: a format {fmt} plan has no [features] (it came in format "
                            f"{FEATURES_SINCE}); set [plan] format = {FEATURES_SINCE}, or remove [features]")
        return Features(share_table=shares[0] if shares else "", event_table=audit_table,
                        idempotency_table=keyed[0] if keyed else "")
    where = "[features]"
    if "features" not in raw:
        raise PlanError(f"plan: missing section [features] (format {fmt}); declare what the schema has: "
                        f"{', '.join(FEATURES_KEYS)} (docs/plan.md, [features])")
    section = _get(raw, "features", "", dict)
    _known(section, FEATURES_KEYS, where)
    versions = _get(section, "schema_versions", where, str)
    if versions not in VERSION_KINDS:
        raise PlanError(f"plan {where}.schema_versions: '{versions}' is not one of {', '.join(VERSION_KINDS)}")
    by_name = {r.name: r for r in rules}

    def table(key: str, what: str, fits: Sequence[str], exclusive: bool = True) -> str | None:
        """The table named under ``key``; with ``exclusive``, false while a table fits contradicts the plan."""
        value = section.get(key, ...)
        if value is ...:
            raise PlanError(f"plan {where}: missing key '{key}'; name {what}, or {key} = false if the schema "
                            f"has none")
        if value is False:
            if fits and exclusive:
                raise PlanError(f"plan {where}.{key} = false, but [tables.{toml_key(fits[0])}] is one; name it "
                                f"({key} = {toml_string(fits[0])}) or change that table's rule")
            return None
        if not isinstance(value, str) or not value:
            raise PlanError(f"plan {where}.{key}: expected a table name or false, got {value!r}")
        if value not in by_name:
            raise PlanError(f"plan {where}.{key}: '{value}' is not one of the plan's tables")
        if value not in fits:
            raise PlanError(f"plan {where}.{key}: [tables.{toml_key(value)}] is not {what}")
        return value

    classified = [r.name for r in rules if r.owner == "classified"]
    return Features(
        row_level_security=_get(section, "row_level_security", where, bool),
        tenant_settings=_get(section, "tenant_settings", where, bool),
        tenant_flags=_get(section, "tenant_flags", where, bool),
        share_table=table("share_table", "the table whose share_target names the tenant a case is shared with",
                          shares),
        event_table=table("event_table", "a classified event table (owner = \"classified\")", classified,
                          exclusive=False),
        idempotency_table=table("idempotency_table", "a table whose case_json names a case", keyed),
        schema_versions=versions)


def _format(meta: Mapping[str, Any]) -> int:
    """``[plan] format``: 1 when absent (a plan written before formats were numbered)."""
    fmt = _get(meta, "format", "[plan]", int, 1)
    if isinstance(fmt, bool) or fmt < 1:
        raise PlanError(f"plan [plan].format: {fmt} is not a plan format (formats 1 to {PLAN_FORMAT}); "
                        f"write format = {PLAN_FORMAT}")
    if fmt > PLAN_FORMAT:
        raise PlanError(f"plan [plan].format: {fmt} is newer than this release reads (formats 1 to {PLAN_FORMAT}); "
                        f"upgrade the suite, or use a plan written for this release")
    return int(fmt)


def _audit(raw: Mapping[str, Any], fmt: int, rules: tuple[TableRule, ...],
           classifications: dict[str, Mapping[str, str]]) -> Audit:
    """``[audit]``: the application's events table (``table`` and its columns), or ``own = true``."""
    _known(raw, tuple(Audit.__dataclass_fields__), "[audit]")
    if _get(raw, "own", "[audit]", bool, False):
        given = [k for k in ("table", *OWN_AUDIT) if k in raw]
        if given:
            raise PlanError(f"plan [audit]: own = true keeps the trail in the cutover's own table {OWN_AUDIT_TABLE}; "
                            f"remove {', '.join(given)}, or remove own = true to write to the application's table")
        kinds = {k: _get(raw, k, "[audit]", str, default) for k, default in AUDIT_KINDS.items()}
        return Audit(table=OWN_AUDIT_TABLE, **OWN_AUDIT, **kinds, own=True)
    if "table" not in raw:
        raise PlanError("plan [audit]: no table; name the application's events table the cutover writes its "
                        "events to (table = \"events\" and its columns), or let the cutover keep its own trail "
                        f"in {OWN_AUDIT_TABLE} (own = true)")
    audit = Audit(**{f: _get(raw, f, "[audit]", str, _added_since(fmt, "audit", f))
                     for f in Audit.__dataclass_fields__ if f != "own"})
    audit_rule = next((r for r in rules if r.name == audit.table), None)
    if audit_rule is None:
        raise PlanError(f"plan [audit].table: '{audit.table}' is not one of the plan's tables")
    if fmt < 2 and "allow_list_part" not in raw and audit_rule.classification in classifications:
        # Format 1 had no allow-list parts: the event type comes with its 'system' classification.
        mapping = classifications[audit_rule.classification]
        classifications[audit_rule.classification] = MappingProxyType({**mapping, audit.allow_list_part: "system"})
    for kind in (audit.started, audit.completed, audit.swept, audit.reversed, audit.allow_list_part):
        cls = classifications.get(audit_rule.classification or "", {}).get(kind)
        if cls != "system":
            raise PlanError(f"plan [audit]: event type '{kind}' must be classified 'system' in "
                            f"[classification.{audit_rule.classification}]")
    return audit


def _added_since(fmt: int, section: str, key: str) -> Any:
    """The default a plan of format ``fmt`` gets for ``key`` if the key came in a later format; else required."""
    for (since, where, name), value in ADDED_SINCE.items():
        if (where, name) == (section, key) and fmt < since:
            return value
    return ...


def _rehearsal(raw: Mapping[str, Any], names: set[str]) -> Rehearsal:
    where = "[rehearsal]"
    _known(raw, (*Rehearsal.__dataclass_fields__,), where)
    fields = {f: _get(raw, f, where, str) for f in Rehearsal.__dataclass_fields__ if f != "straggler"}
    st = _get(raw, "straggler", where, dict)
    _known(st, STRAGGLER_KEYS, f"{where}.straggler")
    values = _get(st, "values", f"{where}.straggler", dict)
    straggler = Straggler(
        table=_get(st, "table", f"{where}.straggler", str),
        marker_column=_get(st, "marker_column", f"{where}.straggler", str),
        marker_key=_get(st, "marker_key", f"{where}.straggler", str),
        marker=_get(st, "marker", f"{where}.straggler", str),
        now_columns=_strings(st, "now_columns", f"{where}.straggler", []),
        values=MappingProxyType({str(k): str(v) for k, v in values.items()}))
    for key in ("case_table", "patient_table", "document_table", "key_table"):
        if fields[key] not in names:
            raise PlanError(f"plan {where}.{key}: '{fields[key]}' is not one of the plan's tables")
    if straggler.table not in names:
        raise PlanError(f"plan {where}.straggler.table: '{straggler.table}' is not one of the plan's tables")
    return Rehearsal(**fields, straggler=straggler)
