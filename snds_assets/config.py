"""Settings of SPEC §1: command-line option > environment variable > default under one home folder."""
from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field, replace
from pathlib import Path

from .azure import AUTH_MODES, AUTH_VARIABLE

PACKAGED_SCHEMAS = Path(__file__).parent / "catalog" / "schemas"
# The levels SparkContext.setLogLevel takes (in any case).
SPARK_LOG_LEVELS = ("ALL", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF")


def _is_uri(value: str) -> bool:
    return "://" in value


# Where the landing zone and the lake may be (README), and fsspec's in-memory file system, which tests use
STORAGE_SCHEMES = ("file", "az", "abfs", "abfss", "memory")


def resolve_path(value: str, setting: str = "a folder setting") -> str:
    """Local paths become absolute so that Dagster runs and the CLI agree; URIs stay as given."""
    if _is_uri(value):
        return value
    try:
        return str(Path(value).expanduser().resolve())
    except RuntimeError as exc:  # "~nouser": Python's "Could not determine home directory." named no setting
        raise ValueError(f"{setting} {value!r}: {value.split('/')[0]} names no user of this machine") from exc


FRESHNESS_VARIABLE = "SNDS_FRESHNESS_DAYS_"  # + a catalog product, upper-cased (DCIR, PMSI...)


def freshness_days(variable: str, text: str) -> int:
    """A ``SNDS_FRESHNESS_DAYS_<PRODUCT>`` value: int() and Dagster's invariant named neither the variable nor what
    it takes."""
    if not (text.isascii() and text.isdigit() and int(text) >= 1):
        raise ValueError(f"{variable} must be a whole number of days, at least 1, got {text!r}")
    return int(text)


def check_spark_remote(url: str) -> None:
    """Spark Connect's own errors quote the URL, token included (a Databricks URL holds one): the same checks as
    its parser, with messages that never show the value."""
    problem = None
    if not url.startswith("sc://"):
        problem = "it must start with sc://"
    else:
        parsed = urllib.parse.urlparse("http" + url[2:])
        if parsed.path not in ("", "/"):
            problem = "it has a path: parameters follow '/;', as in sc://host:15002/;key=value"
        elif parsed.params and any(len(p.split("=")) != 2 for p in parsed.params.split(";")):
            problem = "every parameter after '/;' must be one key=value"
        elif not parsed.hostname:
            problem = "the host is missing"
        else:
            try:
                parsed.port
            except ValueError:
                problem = "the port is not a number from 0 to 65535 (parameters follow '/;')"
    if problem:
        raise ValueError(f"SPARK_REMOTE is not a Spark Connect URL (sc://host:15002[/;key=value...]): {problem}; "
                         "its value is not shown, it may hold a token")


@dataclass(frozen=True)
class Settings:
    home: str
    landing: str
    lake: str
    projects: str
    schemas: str
    nomenclatures: str | None
    dagster_home: str
    spark_remote: str | None = field(repr=False)  # a Databricks URL holds a token: never in a printed Settings
    reject_tolerance: float = 0.01
    parallel_families: int = 2

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: str | None) -> "Settings":
        """Resolve every setting; ``overrides`` are command-line options (None means not given)."""
        env = dict(os.environ if env is None else env)
        given = {k: v for k, v in overrides.items() if v is not None}

        def pick(name: str, var: str, default: str | None) -> str | None:
            if name in given:
                return given[name]
            if env.get(var):
                return env[var]
            return default

        home = resolve_path(pick("home", "SNDS_HOME", "./.snds"), "SNDS_HOME")
        landing = pick("landing", "SNDS_LANDING", os.path.join(home, "landing"))
        lake = pick("lake", "SNDS_LAKE", os.path.join(home, "lake"))
        projects = pick("projects", "SNDS_PROJECTS", os.path.join(home, "projects"))
        schemas = pick("schemas", "SNDS_SCHEMAS", str(PACKAGED_SCHEMAS))
        nomenclatures = pick("nomenclatures", "SNDS_NOMENCLATURES", None)
        dagster_home = pick("dagster_home", "DAGSTER_HOME", os.path.join(home, "dagster"))
        tolerance_text = pick("reject_tolerance", "SNDS_REJECT_TOLERANCE", "0.01")
        try:
            tolerance = float(tolerance_text)
        except ValueError:
            tolerance = -1.0
        if not 0 <= tolerance <= 1:  # also refuses nan
            raise ValueError(f"SNDS_REJECT_TOLERANCE must be a share between 0 and 1 (0.01 is 1 %), "
                             f"got {tolerance_text!r}")
        parallel = pick("parallel_families", "SNDS_PARALLEL_FAMILIES", "2")
        if not (parallel.isascii() and parallel.isdigit()) or int(parallel) < 1:  # "²" is a digit int() refuses
            raise ValueError(f"SNDS_PARALLEL_FAMILIES must be a positive integer, got {parallel!r}")
        # Read by Spark when a run's session starts: checked here, before anything is written, with its name.
        level = env.get("SNDS_SPARK_LOG_LEVEL") or "ERROR"
        if level.upper() not in SPARK_LOG_LEVELS:
            raise ValueError(f"SNDS_SPARK_LOG_LEVEL must be one of {', '.join(SPARK_LOG_LEVELS)}, got {level!r}")
        # Read by Spark only on an abfss:// lake: a typo went unseen with a local lake, and came out as a failed run.
        auth = env.get(AUTH_VARIABLE) or ""
        if auth.strip() and auth.strip().lower() not in AUTH_MODES:
            raise ValueError(f"{AUTH_VARIABLE} must be one of {', '.join(AUTH_MODES)} (or unset: the first complete "
                             f"set of credentials), got {auth!r}")
        # Read where the code location loads (a family's freshness policy): checked here too, so that every command
        # names a bad one before anything starts (`snds ui` started, its code location failing to load in the UI).
        for variable in sorted(v for v in env if v.startswith(FRESHNESS_VARIABLE) and env[v]):
            freshness_days(variable, env[variable])
        spark_remote = pick("spark_remote", "SPARK_REMOTE", None)
        if spark_remote:
            check_spark_remote(spark_remote)
        for variable, value in (("SNDS_LANDING", landing), ("SNDS_LAKE", lake)):
            scheme = value.split("://", 1)[0].lower() if "://" in value else "file"
            if scheme not in STORAGE_SCHEMES:  # s3://... was taken, and failed runs said to install s3fs
                raise ValueError(f"{variable} must be a folder or an Azure URL (az://, abfss://), got {value!r}")
        if _is_uri(projects):  # requests are read as local files: "az://c/p" became the folder "az:/c/p", unseen
            raise ValueError(f"SNDS_PROJECTS must be a local folder (the project requests the hub approved), got "
                             f"{projects!r}")
        return cls(
            home=home,
            landing=resolve_path(landing, "SNDS_LANDING"),
            lake=resolve_path(lake, "SNDS_LAKE"),
            projects=resolve_path(projects, "SNDS_PROJECTS"),
            schemas=resolve_path(schemas, "SNDS_SCHEMAS"),
            nomenclatures=resolve_path(nomenclatures, "SNDS_NOMENCLATURES") if nomenclatures else None,
            dagster_home=resolve_path(dagster_home, "DAGSTER_HOME"),
            spark_remote=spark_remote,
            reject_tolerance=tolerance,
            parallel_families=int(parallel),
        )

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)

    def as_env(self) -> dict[str, str]:
        """The environment that makes a child process (Dagster, Spark) see the same settings."""
        env = {
            "SNDS_HOME": self.home,
            "SNDS_LANDING": self.landing,
            "SNDS_LAKE": self.lake,
            "SNDS_PROJECTS": self.projects,
            "SNDS_SCHEMAS": self.schemas,
            "DAGSTER_HOME": self.dagster_home,
            "SNDS_REJECT_TOLERANCE": str(self.reject_tolerance),
            "SNDS_PARALLEL_FAMILIES": str(self.parallel_families),
        }
        if self.nomenclatures:
            env["SNDS_NOMENCLATURES"] = self.nomenclatures
        if self.spark_remote:
            env["SPARK_REMOTE"] = self.spark_remote
        return env
