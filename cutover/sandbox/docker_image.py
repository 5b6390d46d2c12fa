"""The PostgreSQL image the docker sandbox runs: the one asked for, pulled when a registry answers,
else (for the default ``postgres:15`` only) a stand-in built here from Debian's postgresql-15 packages.

Operators on an offline or registry-blocked machine still have Docker and the distribution's package
mirror. The stand-in is a ``mmdebstrap`` root filesystem of bookworm with postgresql-15, imported with
``docker import`` and cached under :data:`LOCAL_TAG`; its entrypoint honours the official image's
variables the suite relies on (docker-entrypoint.sh beside this module). The recipe's hash is kept in
the image's environment, so a changed recipe rebuilds it and an unchanged one is built once per machine.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

from filelock import FileLock

from cutover.core.errors import SetupError
from cutover.core.progress import Log, quiet
from cutover.core.redact import redact

DEFAULT_IMAGE = "postgres:15"
LOCAL_TAG = "cutover-sandbox/postgres:15-local"
SUITE = "bookworm"
PACKAGES = ("postgresql-15",)
RECIPE_ENV = "CUTOVER_IMAGE_RECIPE"
ENTRYPOINT = Path(str(resources.files("cutover.sandbox") / "image" / "docker-entrypoint.sh"))
_BUILD_TIMEOUT = 900

_HOOKS = (
    # postgresql-common creates a 'main' cluster on install; the container makes its own at start.
    'rm -rf "$1"/var/lib/postgresql/15/main "$1"/etc/postgresql/15/main "$1"/var/cache/apt/archives/*.deb '
    '"$1"/var/lib/apt/lists/*',
    "copy-in {entrypoint} /usr/local/bin",  # a placeholder: the checkout's path is no part of the recipe
    'chroot "$1" sh -c "mkdir -p /var/lib/postgresql/data /var/run/postgresql '
    "&& chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql "
    '&& chmod 700 /var/lib/postgresql/data && chmod 755 /usr/local/bin/docker-entrypoint.sh"',
)
_CHANGES = (
    "ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV PGDATA=/var/lib/postgresql/data",
    "ENV LANG=C.UTF-8",
    "WORKDIR /var/lib/postgresql",
    'ENTRYPOINT ["docker-entrypoint.sh"]',
    'CMD ["postgres"]',
    "EXPOSE 5432",
)


def recipe_hash() -> str:
    """Everything the stand-in is built from; a change means a rebuild."""
    basis = "\n".join([SUITE, *PACKAGES, *_HOOKS, *_CHANGES]).encode() + ENTRYPOINT.read_bytes()
    return hashlib.sha256(basis).hexdigest()[:16]


def _local_recipe(client: Any, tag: str) -> str | None:
    import docker.errors

    try:
        env = client.images.get(tag).attrs.get("Config", {}).get("Env") or []
    except docker.errors.ImageNotFound:
        return None
    return next((e.split("=", 1)[1] for e in env if e.startswith(RECIPE_ENV + "=")), "")


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "explanation", None) or exc).strip().splitlines()
    return redact(text[0] if text else type(exc).__name__, limit=200)


def ensure(client: Any, image: str, log: Log = quiet, given: bool = True) -> str:
    """The image to run: present, pulled, or (``postgres:15`` only) built here.

    ``given``: the operator named it with --docker-image. Otherwise it is ``postgres:N`` of the snapshot's
    major, and the advice must not tell the operator to drop an option they never gave."""
    import docker.errors

    try:
        client.images.get(image)
        return image
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as exc:  # e.g. an invalid reference format
        raise SetupError(f"--docker-image {image!r} is not a usable image name ({_first_line(exc)}); "
                         f"fix --docker-image (default {DEFAULT_IMAGE})") from None
    try:
        log(f"sandbox: pulling {image}")
        client.images.pull(image)
        return image
    except Exception as exc:  # an API error, or a registry that never answers (the SDK's read timeout)
        why = _first_line(exc)
    if image != DEFAULT_IMAGE and given:
        raise SetupError(f"--docker-image {image} is not on this machine and could not be pulled ({why}); "
                         f"pull or load it (docker pull / docker load), or drop --docker-image to use "
                         f"{DEFAULT_IMAGE}")
    if image != DEFAULT_IMAGE:  # postgres:N of the snapshot's major: no stand-in is built for it
        raise SetupError(f"{image} (the snapshot's PostgreSQL major) is not on this machine and could not be "
                         f"pulled ({why}); pull or load it (docker pull {image} / docker load), name an image of "
                         f"that major with --docker-image, or use --sandbox local")
    # One build per machine, whoever asks first; the others wait and then find the tag.
    with FileLock(str(Path(tempfile.gettempdir()) / "cutover-image-build.lock")):
        if _local_recipe(client, LOCAL_TAG) != recipe_hash():
            build(log, why)
        else:
            log(f"sandbox: {image} could not be pulled ({why}); using {LOCAL_TAG}, built earlier on this "
                f"machine from Debian's postgresql-15 packages")
    return LOCAL_TAG


def build(log: Log = quiet, why: str = "no registry answered") -> None:
    """mmdebstrap a bookworm root filesystem with postgresql-15 and ``docker import`` it as LOCAL_TAG."""
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise SetupError(f"{DEFAULT_IMAGE} could not be pulled ({why}) and mmdebstrap, needed to build "
                         f"{LOCAL_TAG} from Debian's packages, is missing; run scripts/bootstrap.sh as root "
                         f"(apt-get install mmdebstrap), or load the image (docker load)")
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        raise SetupError("the docker command is missing; install the Docker CLI (apt-get install docker.io)")
    log(f"sandbox: {DEFAULT_IMAGE} could not be pulled ({why}); building {LOCAL_TAG} from Debian's "
        f"postgresql-15 packages (once per machine, a few minutes)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cutover-image-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        argv = [mmdebstrap, "--variant=minbase", f"--include={','.join(PACKAGES)}",
                "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*"]
        argv += [f"--customize-hook={hook.replace('{entrypoint}', str(ENTRYPOINT))}" for hook in _HOOKS]
        _run([*argv, SUITE, str(rootfs)], "mmdebstrap")
        changes = [*_CHANGES, f"ENV {RECIPE_ENV}={recipe_hash()}"]
        _run([docker_cli, "import", *(f"--change={c}" for c in changes), str(rootfs), LOCAL_TAG], "docker import")
    log(f"sandbox: built {LOCAL_TAG} in {time.monotonic() - started:.0f} s")


def _run(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=_BUILD_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise SetupError(f"building {LOCAL_TAG}: {what} took over {_BUILD_TIMEOUT} s; check the package "
                         "mirror answers (apt-get update)") from None
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr or done.stdout).strip().splitlines() if ln.strip()]
        last = redact(lines[-1], limit=200) if lines else done.returncode
        raise SetupError(f"building {LOCAL_TAG}: {what} failed ({last}); "
                         "check the package mirror answers (apt-get update), or load the image (docker load)")
