"""Where a journal lives: a local directory or an ``s3://bucket/prefix`` URL.

A remote journal's root is an ``S3Location``: it quacks like the few ``pathlib.Path``
operations the journal modules use (``/``, ``str``, ``exists``, ``is_file``, ``read_text``,
``resolve``) so the store keeps one code path. The Delta table itself is reached by deltalake
natively; small files (``journal.toml``, the lock object) and Parquet footers go through s3fs.

Credentials, region and endpoint come from the standard environment variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` or
``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL`` for S3-compatible stores). Every client gets short
connect/read timeouts and few retries, and ``check_bucket`` asks the endpoint once before anything
else, so a wrong endpoint, wrong keys or a missing bucket fail in seconds with the URL named.

>>> loc = S3Location.parse("s3://bucket/journals/prod/")
>>> (str(loc), str(loc / "events" / "_delta_log"), loc.bucket, loc.key)
('s3://bucket/journals/prod', 's3://bucket/journals/prod/events/_delta_log', 'bucket', 'journals/prod')
>>> is_remote("s3://b/p"), is_remote("/tmp/j")
(True, False)
"""

from __future__ import annotations

import functools
import os
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from toolkit.errors import (
    InvalidPathError,
    StorageBucketNotFoundError,
    StorageCredentialsError,
    StorageError,
    StorageUnreachableError,
)
from toolkit.journal.config import CONFIG_FILE

SCHEME = "s3://"
CONNECT_TIMEOUT_S = 3
READ_TIMEOUT_S = 20


def is_remote(path: object) -> bool:
    return isinstance(path, S3Location) or (isinstance(path, str) and path.startswith(SCHEME))


@dataclass(frozen=True)
class S3Location:
    """An object-store prefix addressed like a directory."""

    bucket: str
    key: str  # without leading or trailing slash; "" for the bucket root

    @classmethod
    def parse(cls, url: str) -> S3Location:
        if not url.startswith(SCHEME):
            raise InvalidPathError(f"{url}: not an s3:// URL", hint="write s3://bucket/prefix")
        bucket, _, key = url[len(SCHEME) :].partition("/")
        if not bucket or any(c in bucket for c in " \\?#*"):
            raise InvalidPathError(f"{url}: no valid bucket name", hint="write s3://bucket/prefix", path=url)
        return cls(bucket, key.strip("/"))

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}" if self.key else f"{SCHEME}{self.bucket}"

    def __truediv__(self, name: str) -> S3Location:
        return S3Location(self.bucket, f"{self.key}/{name}".strip("/") if self.key else name)

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def parent(self) -> S3Location:
        return S3Location(self.bucket, self.key.rsplit("/", 1)[0] if "/" in self.key else "")

    @property
    def fs_path(self) -> str:
        """``bucket/key`` as s3fs names it."""
        return f"{self.bucket}/{self.key}" if self.key else self.bucket

    def resolve(self) -> S3Location:
        return self

    def expanduser(self) -> S3Location:
        return self

    def absolute(self) -> S3Location:
        return self

    def exists(self) -> bool:
        return bool(filesystem().exists(self.fs_path))

    def is_file(self) -> bool:
        return bool(filesystem().isfile(self.fs_path))

    def is_dir(self) -> bool:
        return bool(filesystem().isdir(self.fs_path))

    def any_children(self) -> bool:
        return bool(filesystem().ls(self.fs_path, detail=False, refresh=True)) if self.is_dir() else False

    def read_text(self, encoding: str = "utf-8") -> str:
        return bytes(filesystem().cat_file(self.fs_path)).decode(encoding)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        """One PUT: S3 objects appear whole or not at all."""
        filesystem().pipe_file(self.fs_path, text.encode(encoding))

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            filesystem().rm_file(self.fs_path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def iterdir(self) -> Iterator[S3Location]:
        """The objects and prefixes directly under this one (none when there are none)."""
        try:
            names = filesystem().ls(self.fs_path, detail=False, refresh=True)
        except FileNotFoundError:
            return
        for name in names:
            yield S3Location(self.bucket, str(name).split("/", 1)[1] if "/" in str(name) else "")


def s3_settings() -> dict[str, str]:
    """The S3 settings of the environment (absent ones left to the client's defaults)."""
    env = os.environ
    out = {
        "endpoint_url": env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL", ""),
        "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION", ""),
        "key": env.get("AWS_ACCESS_KEY_ID", ""),
        "secret": env.get("AWS_SECRET_ACCESS_KEY", ""),
        "token": env.get("AWS_SESSION_TOKEN", ""),
    }
    return {k: v for k, v in out.items() if v}


def delta_storage_options() -> dict[str, str]:
    """deltalake (object_store) options: the environment's settings, short timeouts, few retries.

    ``AWS_S3_ALLOW_UNSAFE_RENAME``: Delta's commit on S3 needs a put-if-absent or an external
    lock; the toolkit serialises every writer of a journal with its own lock object
    (``toolkit.journal.lock``), which is what makes the plain-PUT commit safe here.
    """
    s = s3_settings()
    opts = {
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
        "timeout": f"{READ_TIMEOUT_S}s",
        "connect_timeout": f"{CONNECT_TIMEOUT_S}s",
        "max_retries": "2",
        "retry_timeout": "10s",
    }
    if "endpoint_url" in s:
        opts["AWS_ENDPOINT_URL"] = s["endpoint_url"]
        if s["endpoint_url"].startswith("http://"):
            opts["AWS_ALLOW_HTTP"] = "true"
    for name, opt in (("region", "AWS_REGION"), ("key", "AWS_ACCESS_KEY_ID"), ("secret", "AWS_SECRET_ACCESS_KEY")):
        if name in s:
            opts[opt] = s[name]
    if "token" in s:
        opts["AWS_SESSION_TOKEN"] = s["token"]
    return opts


def polars_storage_options() -> dict[str, str]:
    """Polars' object-store options (lower-case keys of the same settings)."""
    return {k.lower(): v for k, v in delta_storage_options().items() if k.startswith("AWS_") and "RENAME" not in k}


@functools.cache
def _filesystem(settings: tuple[tuple[str, str], ...]) -> Any:
    try:
        import s3fs  # type: ignore[import-untyped]
    except ImportError as e:  # the optional extra
        raise StorageError(
            "s3:// journals need the s3fs package", hint="pip install 'agent-journal-toolkit[s3]'"
        ) from e
    s = dict(settings)
    client_kwargs = {"region_name": s["region"]} if "region" in s else {}
    return s3fs.S3FileSystem(
        key=s.get("key"),
        secret=s.get("secret"),
        token=s.get("token"),
        endpoint_url=s.get("endpoint_url"),
        client_kwargs=client_kwargs,
        config_kwargs={
            "connect_timeout": CONNECT_TIMEOUT_S,
            "read_timeout": READ_TIMEOUT_S,
            "retries": {"max_attempts": 2, "mode": "standard"},
        },
        use_listings_cache=False,
        skip_instance_cache=True,
    )


def filesystem() -> Any:
    """The s3fs filesystem for the current environment's settings (one per distinct settings)."""
    return _filesystem(tuple(sorted(s3_settings().items())))


def check_bucket(loc: S3Location) -> None:
    """Ask the endpoint for the bucket once; translate failures into errors naming the URL."""
    url = str(loc)
    endpoint = s3_settings().get("endpoint_url", "the default AWS endpoint")
    fs = filesystem()
    try:
        fs.call_s3("head_bucket", Bucket=loc.bucket)
    except FileNotFoundError as e:
        raise StorageBucketNotFoundError(
            f"{url}: bucket {loc.bucket!r} does not exist at {endpoint}",
            hint="create the bucket first, or check the URL and AWS_ENDPOINT_URL",
            url=url,
        ) from e
    except PermissionError as e:
        raise StorageCredentialsError(
            f"{url}: {endpoint} refused the credentials: {e}",
            hint="check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)",
            url=url,
        ) from e
    except Exception as e:
        text = f"{type(e).__name__}: {e}"
        if any(
            w in text
            for w in (
                "Could not connect",
                "ConnectTimeout",
                "EndpointConnection",
                "Connect timeout",
                "ConnectionError",
                "Cannot connect",
            )
        ):
            raise StorageUnreachableError(
                f"{url}: the storage endpoint {endpoint} does not answer ({text[:160]})",
                hint="check AWS_ENDPOINT_URL and the network; the toolkit gives up after a few seconds",
                url=url,
            ) from e
        if "403" in text or "Forbidden" in text or "InvalidAccessKeyId" in text or "SignatureDoesNotMatch" in text:
            raise StorageCredentialsError(
                f"{url}: {endpoint} refused the credentials ({text[:160]})",
                hint="check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)",
                url=url,
            ) from e
        if "404" in text or "NoSuchBucket" in text or "Not Found" in text:
            raise StorageBucketNotFoundError(
                f"{url}: bucket {loc.bucket!r} does not exist at {endpoint}",
                hint="create the bucket first, or check the URL and AWS_ENDPOINT_URL",
                url=url,
            ) from e
        raise StorageError(f"{url}: cannot reach the journal's storage: {text[:200]}", url=url) from e


def open_input(path: str) -> Any:
    """A readable file for a data file path or ``s3://`` URL (pyarrow accepts both)."""
    if path.startswith(SCHEME):
        return filesystem().open(path[len(SCHEME) :], "rb", block_size=4 << 20, cache_type="readahead")
    return path


def refuse_inside(output: str | Path, root: str | Path, *, hint: str | None = None) -> None:
    """InvalidPathError when ``output`` is the journal directory ``root`` or lies inside it: a
    table, a checkpoint or a bundle written there would replace the journal's own files."""
    out, top = Path(output).expanduser().resolve(), Path(root).resolve()
    if out == top or top in out.parents:
        raise InvalidPathError(
            f"{output}: is inside the journal {root}",
            hint=hint or "write -o outside the journal directory (its files are the journal's own)",
            path=output,
        )


def refuse_remote_output(output: str | Path, option: str) -> None:
    """InvalidPathError when the file ``output`` is an ``s3://`` URL: archives are local files, and
    the path would name a local directory ``s3:`` (``Path("s3://b/k")`` is ``s3:/b/k``).

    >>> refuse_remote_output("s3://bucket/old.parquet", "--archive")
    Traceback (most recent call last):
    toolkit.errors.InvalidPathError: s3://bucket/old.parquet: --archive takes a local file, not an s3:// URL
    Hint: write the archive to a local path (copy it to object storage afterwards)
    """
    if is_remote(str(output)):
        raise InvalidPathError(
            f"{output}: {option} takes a local file, not an s3:// URL",
            hint="write the archive to a local path (copy it to object storage afterwards)",
            path=str(output),
        )


def refuse_journal_file(output: str | Path) -> None:
    """InvalidPathError when the file ``output`` names lies inside a journal directory (one that holds
    ``journal.toml``), whatever way leads there: ``..``, a symbolic link (a link left in an export or
    chart directory, to ``journal.toml``, would have been written through) or a linked directory.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "j").mkdir(), (d / "j" / "journal.toml").write_text("mine"), (d / "out").mkdir()
    >>> os.symlink(d / "j" / "journal.toml", d / "out" / "chart.json")
    >>> refuse_journal_file(d / "out" / "other.json")
    >>> refuse_journal_file(d / "out" / "chart.json")
    Traceback (most recent call last):
    toolkit.errors.InvalidPathError: ...chart.json: is inside the journal .../j (it leads to .../j/journal.toml)
    Hint: write outside the journal directory (its files are the journal's own)
    """
    given = Path(output).expanduser()
    real = given.resolve()
    for parent in real.parents:
        if (parent / CONFIG_FILE).is_file():
            leads = "" if real == given.absolute() else f" (it leads to {real})"
            raise InvalidPathError(
                f"{output}: is inside the journal {parent}{leads}",
                hint="write outside the journal directory (its files are the journal's own)",
                path=str(output),
            )


@contextmanager
def open_output(
    output: str | Path, mode: Literal["w", "wb"] = "w", *, atomic: bool = False, newline: str | None = None
) -> Iterator[IO[Any]]:
    """Open the file ``output`` to write it without writing through its other names.

    A regular file with more than one name (a hard link: the other name may be a journal file,
    which :func:`refuse_inside` cannot see from this path) is replaced, not written through: the
    data goes to a new file beside it that is renamed over it, so the other names keep their bytes.
    ``atomic`` replaces a new or single-name file the same way (a crash leaves the old file or
    the new one); ``newline`` is :func:`open`'s. Anything else that exists — a pipe, ``/dev/stdout`` — is written in place.
    A file inside a journal directory, named or reached through a symbolic link, is refused
    (:func:`refuse_journal_file`), also one a link swapped in after that check leads to: a file
    written in place must be the one checked (its device and inode, or nothing when nothing was
    there: ``O_EXCL``) and, where the system names an open file (``/proc/self/fd``), outside a journal.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "events.jsonl").write_text("mine")
    >>> os.link(d / "events.jsonl", d / "out.csv")
    >>> with open_output(d / "out.csv") as f:
    ...     _ = f.write("x\\n1\\n")
    >>> (d / "events.jsonl").read_text(), (d / "out.csv").read_text()
    ('mine', 'x\\n1\\n')
    """
    path = Path(output).expanduser()
    try:  # before the check: a link swapped in after it leads to a file other than this one
        st: os.stat_result | None = path.stat()
    except FileNotFoundError:
        st = None
    refuse_journal_file(path)
    encoding = None if "b" in mode else "utf-8"
    regular = st is None or stat.S_ISREG(st.st_mode)
    if not regular or not (atomic or (st is not None and st.st_nlink > 1)):
        with os.fdopen(_open_checked(path, st), mode, encoding=encoding, newline=newline) as f:
            yield f
        return
    real = path.resolve()  # a symbolic link keeps its name and points at the new file
    refuse_journal_file(real)  # where a link swapped in since the check leads
    tmp = real.with_name(f".{real.name}.{uuid.uuid4().hex[:12]}.tmp")
    # O_EXCL: never a file (or link) that is there already; 0o666 less the umask, as open() makes
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as f:
            if st is not None:
                os.fchmod(f.fileno(), stat.S_IMODE(st.st_mode))
            yield f
        os.replace(tmp, real)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _open_checked(path: Path, checked: os.stat_result | None) -> int:
    """A descriptor to write ``path`` in place, opened only if it is the file ``checked`` was
    (``None``: nothing was there, so nothing that is there now is opened, not even a link; a link
    to nothing has the file it leads to created), and, where the system tells which file a
    descriptor is, one outside any journal. A regular file is
    emptied only then (``open(path, "w")`` truncated whatever a link swapped in led to)."""
    flags = os.O_WRONLY | getattr(os, "O_NOCTTY", 0)
    # a link to a file not there yet: that file is created
    named = os.path.realpath(path) if checked is None and path.is_symlink() else path
    try:
        fd = os.open(named, flags | os.O_CREAT | os.O_EXCL, 0o666) if checked is None else os.open(path, flags)
    except FileExistsError as e:
        raise _changed(path, "appeared") from e
    except FileNotFoundError as e:
        if checked is None:  # no such directory
            raise
        raise _changed(path, "was removed") from e  # there when looked at (no O_CREAT), gone since
    try:
        opened = os.fstat(fd)
        if checked is not None and (opened.st_dev, opened.st_ino) != (checked.st_dev, checked.st_ino):
            raise _changed(path, "was replaced")
        if stat.S_ISREG(opened.st_mode):
            where = _opened_path(fd)
            if where is not None:
                refuse_journal_file(where)
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _opened_path(fd: int) -> str | None:
    """The path of the file open as ``fd`` where the system tells it (Linux: ``/proc/self/fd``)."""
    try:
        where = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    return where if where.startswith("/") and not where.endswith(" (deleted)") else None


def _changed(path: Path, what: str) -> InvalidPathError:
    return InvalidPathError(
        f"{path}: a file {what} there between the check that it is outside any journal and its opening",
        hint="run the command again; if it happens again, something is changing that path (a link into a journal?)",
        path=str(path),
    )
