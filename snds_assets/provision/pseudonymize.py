"""Project pseudonyms (SPEC §3): SNDS pseudonyms become keyed hashes that only make sense inside one project.

``NUM_ENQ = HMAC-SHA256(k_NUM_ENQ, pseudo-NIR)`` where ``k_NUM_ENQ = HMAC-SHA256(project secret,
"snds_assets/project-pseudonym/" + label)``: a project's pseudonyms stay what they were only while this holds.
The same pseudo-NIR gives the same NUM_ENQ whether it comes from BEN_NIR_PSA (DCIR) or NIR_ANO_17 (PMSI);
two projects have independent secrets, so their pseudonyms cannot be linked. The hash runs as Spark's built-in
``hmac`` expression (no Python UDF). The project secret is generated once and stored only under
``<lake>/restricted/projects/<ID>/``. A sub-key is as secret as the pseudonyms are safe (with it and a pseudo-NIR,
anyone computes its NUM_ENQ), so it is no literal of a query either: Spark reads it from a one-row table when the
query runs (a scalar subquery), and the plans that the Spark UI, a cluster's query history or an analysis error's
message show name that table, not the key.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from .. import domain
from ..config import Settings
from ..lake import Lake
from . import storage

SECRET_FILE = "secret.key"
CHECK_FILE = "secret.check"  # the secret's fingerprint for this project: a replaced secret is told
SECRET_BYTES = 32
_CONTEXT = b"snds_assets/project-pseudonym/"


class SecretError(ValueError):
    """The project secret is missing, damaged or not the project's: what to restore is said."""


def secret_path(settings: Settings, project_id: str) -> str:
    return Lake(settings.lake).restricted(project_id, SECRET_FILE)


def project_secret(settings: Settings, project_id: str) -> bytes:
    """The project's secret, created on first use (owner-only file) and never changed afterwards. A project that
    already has a space or a correspondence without its secret lost it: a new one would silently give its
    researchers new pseudonyms that do not match their earlier extracts. A secret replaced since its first use (a
    wrong backup, another project's file copied over it) would do the same, or give two projects one set of
    pseudonyms: its fingerprint for this project, written beside it then, must match."""
    path = secret_path(settings, project_id)
    data = _read(path, project_id)
    lake = Lake(settings.lake)
    if data is None and (storage.list_dirs(lake.project(project_id))
                         or storage.list_dirs(lake.restricted(project_id))):
        raise SecretError(f"the secret of project {project_id} is missing from restricted/ while the project has "
                          "extracts; restore it from backup, or remove the project's space and restricted/ folder "
                          "to extract it again under new pseudonyms")
    if data is None:
        storage.write_bytes(path, secrets.token_bytes(SECRET_BYTES), private=True, exclusive=True)
        data = _read(path, project_id)
    if data is None or len(data) != SECRET_BYTES:
        raise SecretError(f"the secret of project {project_id} under restricted/ is damaged; restore it from backup "
                          "(a new secret would change every pseudonym of the project)")
    check_path = lake.restricted(project_id, CHECK_FILE)
    expected = key_check(data, project_id)
    check = _read(check_path, project_id)
    if check is None:  # first use, or a project extracted before fingerprints were kept: this secret is its own
        storage.write_bytes(check_path, expected, private=True, exclusive=True)
        check = _read(check_path, project_id)
    if check is None or not hmac.compare_digest(check.strip(), expected):
        raise SecretError(f"the secret of project {project_id} under restricted/ is not the one its pseudonyms were "
                          f"made with (replaced, or copied from another project: {CHECK_FILE} beside it does not "
                          "match); restore the project's own secret from backup, or remove the project's space and "
                          "restricted/ folder to extract it again under new pseudonyms")
    return data


def key_check(secret: bytes, project_id: str) -> bytes:
    """The secret's fingerprint for one project (hex): another project's secret does not match it."""
    return hmac.new(secret, _CONTEXT + b"key-check/" + project_id.encode("utf-8"), hashlib.sha256).hexdigest().encode()


def _read(path: str, project_id: str) -> bytes | None:
    try:
        return storage.read_bytes(path)
    except OSError as exc:  # a folder in its place, a file the run may not read
        raise SecretError(f"the secret of project {project_id} under restricted/ cannot be read ({exc.strerror or exc}"
                          f": {path}); restore it from backup") from exc


def label_of(column: str) -> str:
    """The pseudonym family of an SNDS column, which is also its name in an extract: BEN_NIR_PSA and NIR_ANO_17
    share NUM_ENQ's."""
    return domain.PROJECT_PSEUDONYMS.get(column, column)


def key_label(column: str) -> str:
    """The label of the key that hashes ``column``: its pseudonym family's, or that of the column whose values it
    shares (ASS_NIR_ANO is hashed as BEN_NIR_ANO, so an insured's NUM_ENQ_ANO is their dependents' ASS_NIR_ANO)."""
    return label_of(domain.SAME_SPACE_AS.get(column, column))


def subkey(secret: bytes, label: str) -> bytes:
    return hmac.new(secret, _CONTEXT + label.encode("utf-8"), hashlib.sha256).digest()


def pseudonym_value(value: str | None, secret: bytes, label: str) -> str | None:
    """The pseudonym of one value, computed in Python (the reference for the Spark expression)."""
    if value is None or str(value).strip() == "":
        return None
    return hmac.new(subkey(secret, label), str(value).encode("utf-8"), hashlib.sha256).hexdigest()


def subkey_column(session: SparkSession, secret: bytes, label: str) -> Column:
    """The label's sub-key as a scalar subquery of a one-row table (an Arrow table: a local relation, no Python
    worker), which Spark reads once per query: the key's bytes are in no plan."""
    table = pa.table({"k": pa.array([subkey(secret, label)], pa.binary())})
    return session.createDataFrame(table).scalar()


def pseudonym(column: Column | str, secret: bytes, label: str, session: SparkSession) -> Column:
    """Spark expression of a project pseudonym (lower-case hex, null for a null or blank value)."""
    value = (F.col(column) if isinstance(column, str) else column).cast("string")
    digest = F.lower(F.hex(F.hmac(subkey_column(session, secret, label), F.encode(value, "UTF-8"))))
    return F.when(value.isNotNull() & (F.trim(value) != ""), digest)


def pseudonymize(df: DataFrame, secret: bytes, drop_other: bool = False) -> DataFrame:
    """Replace every patient pseudonym column: BEN_NIR_PSA / NIR_ANO_17 -> NUM_ENQ, BEN_IDT_ANO -> NUM_ENQ_IDT,
    BEN_NIR_ANO -> NUM_ENQ_ANO; other patient pseudonyms (NIR_ANO_MAM...) are hashed in place, or dropped, with
    the key of the space they share (``key_label``).
    """
    out: list[Column] = []
    produced: set[str] = set()
    session = df.sparkSession
    for name in df.columns:
        if name in domain.PROJECT_PSEUDONYMS:
            target = domain.PROJECT_PSEUDONYMS[name]
            if target in produced:
                continue
            produced.add(target)
            out.append(pseudonym(name, secret, label_of(name), session).alias(target))
        elif name in domain.OTHER_PATIENT_PSEUDONYMS:
            if not drop_other:
                out.append(pseudonym(name, secret, key_label(name), session).alias(name))
        else:
            out.append(F.col(name))
    return df.select(*out)


def in_content_order(df: DataFrame, by: list[str] | None = None) -> DataFrame:
    """``df`` spread over its files by a hash of its values (``by``: those columns) and sorted within each by
    them, project pseudonyms first. Written in the order it was read, an extract kept the curated order, which
    follows the SNDS pseudo-NIRs wherever CNAM sorts a table by patient: two projects sharing patients would have
    seen them in the same order. A hash exchange, not a global sort, whose sampling job would run the extraction's
    plan twice."""
    by = list(df.columns if by is None else by)
    pseudonyms = set(domain.PROJECT_PSEUDONYMS.values())
    columns = [c for c in by if c in pseudonyms] + [c for c in by if c not in pseudonyms]
    return df.repartition(*columns).sortWithinPartitions(*columns)

