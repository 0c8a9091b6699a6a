"""The lake on ADLS Gen2 (``SNDS_LAKE=abfss://<container>@<account>.dfs.core.windows.net/<path>``): the Hadoop ABFS
settings Spark needs to reach it, built from the standard Azure variables.

Spark reads and writes an ``abfss://`` lake through Hadoop's ABFS connector (hadoop-azure). That jar is not part of
PySpark and cannot be fetched here: the cluster provides it (Databricks and HDInsight ship it; a plain Spark
cluster adds ``org.apache.hadoop:hadoop-azure`` of its Hadoop version). The small files the product writes itself
(reports, raw archive) go through fsspec/adlfs, which reads the same variables.

Credentials, from the most to the least restricted (the first one complete wins, unless ``SNDS_LAKE_AUTH`` names
one):

- ``oauth``: a service principal, ``AZURE_STORAGE_CLIENT_ID``/``_CLIENT_SECRET``/``_TENANT_ID`` (adlfs's names) or
  ``AZURE_CLIENT_ID``/``AZURE_CLIENT_SECRET``/``AZURE_TENANT_ID`` (azure-identity's);
- ``sas``: ``AZURE_STORAGE_SAS_TOKEN``, or ``SharedAccessSignature=`` of ``AZURE_STORAGE_CONNECTION_STRING``
  for the same account (Hadoop's fixed SAS token, Hadoop >= 3.4);
- ``key``: ``AZURE_STORAGE_ACCOUNT_KEY``, or ``AccountKey=`` of ``AZURE_STORAGE_CONNECTION_STRING`` for the same
  account; a plain key or SAS token counts only when ``AZURE_STORAGE_ACCOUNT_NAME`` is unset or names the lake's
  account (it is that account's);
- ``msi``: a managed identity (only when ``SNDS_LAKE_AUTH=msi``; ``AZURE_CLIENT_ID`` picks a user-assigned one);
- ``cluster``: nothing is set, the cluster already holds the credentials (Databricks Unity Catalog, a cluster-wide
  core-site.xml, Spark Connect).

Every key is scoped to the lake's account (``fs.azure.<setting>.<account>.dfs.core.windows.net``), so a landing
zone on another account is unaffected. Secret values never appear in a repr, a log line or an error message.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Optional

log = logging.getLogger(__name__)

AUTH_MODES = ("oauth", "sas", "key", "msi", "cluster")
AUTH_VARIABLE = "SNDS_LAKE_AUTH"
REDACTED = "<redacted>"

AUTH_TYPE = "fs.azure.account.auth.type"
ACCOUNT_KEY = "fs.azure.account.key"
SAS_FIXED_TOKEN = "fs.azure.sas.fixed.token"
OAUTH_PROVIDER_TYPE = "fs.azure.account.oauth.provider.type"
OAUTH_CLIENT_ID = "fs.azure.account.oauth2.client.id"
OAUTH_CLIENT_SECRET = "fs.azure.account.oauth2.client.secret"
OAUTH_CLIENT_ENDPOINT = "fs.azure.account.oauth2.client.endpoint"
MSI_TENANT = "fs.azure.account.oauth2.msi.tenant"
CLIENT_CREDS_PROVIDER = "org.apache.hadoop.fs.azurebfs.oauth2.ClientCredsTokenProvider"
MSI_PROVIDER = "org.apache.hadoop.fs.azurebfs.oauth2.MsiTokenProvider"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"

# Settings whose value is a credential (account-scoped keys start with these).
SECRET_SETTINGS = (ACCOUNT_KEY, SAS_FIXED_TOKEN, OAUTH_CLIENT_SECRET)

# Spark masks matching settings in its UI, event logs and error messages. Its default misses the account key.
SPARK_REDACTION_REGEX = r"(?i)secret|password|token|access[.]?key|fs\.azure\.account\.key"

_ABFSS = re.compile(r"^abfss?://(?P<container>[^@/]+)@(?P<host>(?P<account>[^./]+)\.dfs\.[^/]+)(?P<path>/.*)?$")


@dataclass(frozen=True)
class AbfssLocation:
    """``abfss://<container>@<account>.dfs.core.windows.net/<path>`` taken apart."""

    container: str
    account: str
    host: str  # <account>.dfs.core.windows.net (or a sovereign cloud's suffix): the account scope of every key
    path: str

    @classmethod
    def parse(cls, url: str) -> "AbfssLocation":
        match = _ABFSS.match(url.strip())
        if not match:
            raise ValueError(
                f"{url!r} is not an ADLS Gen2 URI: expected abfss://<container>@<account>.dfs.core.windows.net/<path>")
        return cls(match["container"], match["account"], match["host"], (match["path"] or "/").rstrip("/") or "/")


def is_abfs(url: Optional[str]) -> bool:
    return bool(url) and url.strip().lower().startswith(("abfss://", "abfs://"))


def is_secret_setting(key: str) -> bool:
    """Whether a Hadoop or Spark setting holds a credential (with or without the ``spark.hadoop.`` prefix)."""
    bare = key[len("spark.hadoop."):] if key.startswith("spark.hadoop.") else key
    return any(bare == s or bare.startswith(s + ".") for s in SECRET_SETTINGS)


class AbfsConf(Mapping):
    """The Hadoop ABFS settings for one storage account: a read-only mapping whose repr and str mask secrets.

    ``mode`` says which credentials were used; ``spark_conf()`` gives the ``spark.hadoop.*`` form for a session
    builder (secret values included: hand it to Spark, never to a logger).
    """

    def __init__(self, settings: Mapping[str, str], mode: str, account: str):
        self._settings = dict(settings)
        self.mode = mode
        self.account = account

    def __getitem__(self, key: str) -> str:
        return self._settings[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._settings)

    def __len__(self) -> int:
        return len(self._settings)

    def redacted(self) -> dict[str, str]:
        return {k: (REDACTED if is_secret_setting(k) else v) for k, v in self._settings.items()}

    def spark_conf(self) -> dict[str, str]:
        conf = {f"spark.hadoop.{k}": v for k, v in self._settings.items()}
        if conf:
            conf["spark.redaction.regex"] = SPARK_REDACTION_REGEX
        return conf

    def describe(self) -> str:
        """One log line: the account, the mode and the settings, secrets masked."""
        shown = ", ".join(f"{k}={v}" for k, v in self.redacted().items()) or "none (the cluster provides them)"
        return f"ABFS credentials for account {self.account}: {self.mode} ({shown})"

    def __repr__(self) -> str:
        return f"AbfsConf(mode={self.mode!r}, account={self.account!r}, settings={self.redacted()!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AbfsConf):
            return (self.mode, self.account, self._settings) == (other.mode, other.account, other._settings)
        return dict(self._settings) == other

    __hash__ = None  # type: ignore[assignment]


def parse_connection_string(value: Optional[str]) -> dict[str, str]:
    """``Key=Value;...`` of an Azure Storage connection string (values may contain ``=``)."""
    parts: dict[str, str] = {}
    for item in (value or "").split(";"):
        if "=" in item:
            key, _, val = item.partition("=")
            parts[key.strip()] = val.strip()
    return parts


def _first(env: Mapping[str, str], *names: str) -> Optional[str]:
    for name in names:
        if env.get(name):
            return env[name]
    return None


def _connection_account(conn: Mapping[str, str]) -> Optional[str]:
    """The account of a connection string: AccountName, else the host of its blob or dfs endpoint."""
    if conn.get("AccountName"):
        return conn["AccountName"]
    for endpoint in ("BlobEndpoint", "DfsEndpoint"):
        match = re.match(r"^\w+://([^./:]+)\.", conn.get(endpoint, ""))
        if match:
            return match[1]
    return None


def _credentials(env: Mapping[str, str], account: str) -> dict[str, dict[str, Optional[str]]]:
    """What each mode would use, read from the environment (values are secrets: never log this)."""
    conn = parse_connection_string(env.get("AZURE_STORAGE_CONNECTION_STRING"))
    same_account = _connection_account(conn) == account
    # A plain key or SAS token is AZURE_STORAGE_ACCOUNT_NAME's (set for the landing zone): not another account's.
    named = env.get("AZURE_STORAGE_ACCOUNT_NAME")
    plain = {} if named and named != account else env
    sas = _first(plain, "AZURE_STORAGE_SAS_TOKEN") or (conn.get("SharedAccessSignature") if same_account else None)
    return {
        "oauth": {
            "client_id": _first(env, "AZURE_STORAGE_CLIENT_ID", "AZURE_CLIENT_ID"),
            "client_secret": _first(env, "AZURE_STORAGE_CLIENT_SECRET", "AZURE_CLIENT_SECRET"),
            "tenant_id": _first(env, "AZURE_STORAGE_TENANT_ID", "AZURE_TENANT_ID"),
        },
        "sas": {"token": sas.lstrip("?") if sas else None},
        "key": {"key": _first(plain, "AZURE_STORAGE_ACCOUNT_KEY") or (conn.get("AccountKey") if same_account else None)},
    }


# The account a URL names: abfss://<container>@<account>.dfs.core.windows.net/... (or .blob., or az://...@...).
_URL_ACCOUNT = re.compile(r"^(?:abfss?|az)://[^@/]+@(?P<account>[^./]+)\.(?:dfs|blob)\.(?P<suffix>[^/?]*)",
                          re.IGNORECASE)
PUBLIC_SUFFIX = "core.windows.net"


def url_account(url: str) -> Optional[str]:
    """The storage account named in an Azure URL (None for ``az://<container>/...``, which names none)."""
    match = _URL_ACCOUNT.match(url.strip())
    return match["account"] if match else None


def adlfs_options(url: str) -> dict[str, str]:
    """What adlfs must be told of an Azure URL naming an account of a sovereign cloud
    (``abfss://lake@<account>.dfs.core.chinacloudapi.cn``): adlfs reads the account from a ``.core.windows.net``
    host only, and otherwise goes to ``AZURE_STORAGE_ACCOUNT_NAME``'s account on the public cloud."""
    match = _URL_ACCOUNT.match(url.strip())
    if not match or match["suffix"].lower() == PUBLIC_SUFFIX:
        return {}
    return {"account_name": match["account"], "account_host": f"{match['account']}.blob.{match['suffix']}"}


def foreign_credentials(account: str, env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """Why adlfs would reach ``account`` with another account's credentials (None when it would not).

    adlfs uses ``AZURE_STORAGE_CONNECTION_STRING`` for every URL whatever account the URL names: a lake on
    another account than the landing zone's connection string was written, silently, to a container of the same
    name on the landing's account. An account key or SAS token (made for ``AZURE_STORAGE_ACCOUNT_NAME``) is sent
    to the URL's account and refused there. The message names variables and accounts, never a value."""
    env = os.environ if env is None else env
    # Short: a run's failure line keeps 300 characters.
    fix = "use one account for landing and lake, or an Azure identity with AZURE_STORAGE_ACCOUNT_NAME for the landing"
    if env.get("AZURE_STORAGE_CONNECTION_STRING"):
        other = _connection_account(parse_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"]))
        if other != account:
            owner = f"account {other}" if other else "another account"
            return f"AZURE_STORAGE_CONNECTION_STRING is for {owner} (adlfs would use it here): {fix}"
        return None
    named = env.get("AZURE_STORAGE_ACCOUNT_NAME")
    secret = _first(env, "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN")
    if secret and named and named != account:
        which = "AZURE_STORAGE_ACCOUNT_KEY" if env.get("AZURE_STORAGE_ACCOUNT_KEY") else "AZURE_STORAGE_SAS_TOKEN"
        return f"{which} is for account {named} (AZURE_STORAGE_ACCOUNT_NAME; adlfs would send it here): {fix}"
    return None


_REQUIRED_VARIABLES = {
    "oauth": "AZURE_CLIENT_ID, AZURE_CLIENT_SECRET and AZURE_TENANT_ID (or their AZURE_STORAGE_ forms)",
    "sas": "AZURE_STORAGE_SAS_TOKEN with AZURE_STORAGE_ACCOUNT_NAME unset or naming this account (or a connection "
           "string with SharedAccessSignature for this account)",
    "key": "AZURE_STORAGE_ACCOUNT_KEY with AZURE_STORAGE_ACCOUNT_NAME unset or naming this account (or a connection "
           "string with AccountKey for this account)",
}


def abfs_conf(lake: str, env: Optional[Mapping[str, str]] = None, auth: Optional[str] = None) -> AbfsConf:
    """The Hadoop ABFS settings that let Spark reach the ``abfss://`` lake, from the environment.

    ``auth`` (else ``SNDS_LAKE_AUTH``, else the first complete set of credentials) picks the mode; a named mode
    whose variables are missing is an error that names the variables, never their values.
    """
    env = os.environ if env is None else env
    where = AbfssLocation.parse(lake)
    scope = where.host
    wanted = (auth or env.get(AUTH_VARIABLE) or "").strip().lower() or None
    if wanted is not None and wanted not in AUTH_MODES:
        raise ValueError(f"{AUTH_VARIABLE}={wanted!r} is not one of {', '.join(AUTH_MODES)}")
    found = _credentials(env, where.account)
    if wanted is None:
        wanted = next((m for m in ("oauth", "sas", "key") if all(found[m].values())), "cluster")
    elif wanted in found and not all(found[wanted].values()):
        raise ValueError(f"{AUTH_VARIABLE}={wanted} for the lake on account {where.account} needs "
                         f"{_REQUIRED_VARIABLES[wanted]}")

    def key(setting: str) -> str:
        return f"{setting}.{scope}"

    if wanted == "oauth":
        creds = found["oauth"]
        authority = (env.get("AZURE_AUTHORITY_HOST") or DEFAULT_AUTHORITY).rstrip("/")
        if "://" not in authority:
            authority = f"https://{authority}"
        settings = {
            key(AUTH_TYPE): "OAuth",
            key(OAUTH_PROVIDER_TYPE): CLIENT_CREDS_PROVIDER,
            key(OAUTH_CLIENT_ID): creds["client_id"],
            key(OAUTH_CLIENT_SECRET): creds["client_secret"],
            key(OAUTH_CLIENT_ENDPOINT): f"{authority}/{creds['tenant_id']}/oauth2/token",
        }
    elif wanted == "sas":
        settings = {key(AUTH_TYPE): "SAS", key(SAS_FIXED_TOKEN): found["sas"]["token"]}
    elif wanted == "key":
        settings = {key(AUTH_TYPE): "SharedKey", key(ACCOUNT_KEY): found["key"]["key"]}
    elif wanted == "msi":
        settings = {key(AUTH_TYPE): "OAuth", key(OAUTH_PROVIDER_TYPE): MSI_PROVIDER}
        tenant = _first(env, "AZURE_TENANT_ID")
        client = _first(env, "AZURE_CLIENT_ID")
        if tenant:
            settings[key(MSI_TENANT)] = tenant
        if client:
            settings[key(OAUTH_CLIENT_ID)] = client
    else:
        settings = {}
    return AbfsConf(settings, wanted, where.account)


def lake_session_conf(lake: Optional[str], remote: Optional[str] = None,
                      env: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """Extra settings for this process's Spark session so that it can write the lake.

    Nothing for a local lake. For an ``abfss://`` lake on a local session: the ``spark.hadoop.*`` ABFS settings.
    On Spark Connect the session's Hadoop settings belong to the server: they must be set on the cluster (its
    spark-defaults, or the Databricks cluster / Unity Catalog external location), so nothing is sent from here.
    """
    if not is_abfs(lake):
        return {}
    if remote:
        where = AbfssLocation.parse(lake)
        log.info("lake on ADLS account %s through Spark Connect: the cluster holds the ABFS credentials and the "
                 "hadoop-azure jars", where.account)
        return {}
    conf = abfs_conf(lake, env)
    log.info("%s", conf.describe())
    return conf.spark_conf()
