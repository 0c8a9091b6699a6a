"""Azure: the ABFS settings Spark gets for an abfss:// lake, and the landing zone on Azure Blob (a real Azurite).

The landing tests upload deliveries with azure-storage-blob into Azurite and let the product read them through
``SNDS_LANDING=az://<container>/<prefix>`` (adlfs), exactly as on an Azure storage account.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from pathlib import Path

import pytest
from dagster import DagsterInstance, build_sensor_context

from snds_assets import azure
from snds_assets.azure import AbfssLocation, abfs_conf, is_secret_setting, lake_session_conf
from snds_assets.catalog import Catalog
from snds_assets.config import Settings
from snds_assets.reception.archive import archive_family, archive_manifest
from snds_assets.reception.storage import (StorageError, filesystem, lake_file_versions, list_deliveries,
                                           parquet_summary, read_manifest, unlisted_files, write_lake_bytes,
                                           ValueRange)

from .reception_delivery import Delivery, csv_bytes, dummy_rows
from .services import AZURITE_KEY, DELIVERY_ID, curated_summary, generate, ingest_in_process, load_report

LAKE = "abfss://lake@snds.dfs.core.windows.net/prod"
HOST = "snds.dfs.core.windows.net"
KEY = "c2VjcmV0LWFjY291bnQta2V5LXZhbHVl=="
SAS = "sv=2024-11-04&ss=b&srt=co&sp=rwdlac&se=2030-01-01T00:00:00Z&sig=SECRETSIGNATURE%3D"
CLIENT_SECRET = "sp-client-secret-value~123"
TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
SECRETS = (KEY, SAS, CLIENT_SECRET, "SECRETSIGNATURE")


# --- The abfss:// lake: Hadoop ABFS settings ---------------------------------------------------------------------
def test_abfss_uri_is_taken_apart():
    where = AbfssLocation.parse("abfss://lake@snds.dfs.core.windows.net/prod/snds/")
    assert (where.container, where.account, where.host, where.path) == ("lake", "snds", HOST, "/prod/snds")
    assert AbfssLocation.parse("abfss://lake@gov1.dfs.core.usgovcloudapi.net").host == "gov1.dfs.core.usgovcloudapi.net"
    for bad in ("az://lake/prod", "abfss://snds.dfs.core.windows.net/prod", "/data/lake"):
        with pytest.raises(ValueError, match="abfss://<container>@<account>"):
            AbfssLocation.parse(bad)


def test_account_key_settings():
    conf = abfs_conf(LAKE, {"AZURE_STORAGE_ACCOUNT_KEY": KEY})
    assert conf.mode == "key"
    assert dict(conf) == {
        f"fs.azure.account.auth.type.{HOST}": "SharedKey",
        f"fs.azure.account.key.{HOST}": KEY,
    }


def test_account_key_from_the_connection_string_of_the_same_account_only():
    same = f"DefaultEndpointsProtocol=https;AccountName=snds;AccountKey={KEY};EndpointSuffix=core.windows.net"
    assert dict(abfs_conf(LAKE, {"AZURE_STORAGE_CONNECTION_STRING": same}))[f"fs.azure.account.key.{HOST}"] == KEY
    other = same.replace("AccountName=snds", "AccountName=landingacct")
    conf = abfs_conf(LAKE, {"AZURE_STORAGE_CONNECTION_STRING": other})
    assert conf.mode == "cluster" and dict(conf) == {}


def test_key_or_sas_of_the_account_named_for_the_landing_is_not_the_lakes():
    """AZURE_STORAGE_ACCOUNT_KEY / _SAS_TOKEN belong to AZURE_STORAGE_ACCOUNT_NAME's account (adlfs's reading): a
    landing zone's key is never handed to Spark for a lake on another account, as for a connection string."""
    for var, value, mode in (("AZURE_STORAGE_ACCOUNT_KEY", KEY, "key"), ("AZURE_STORAGE_SAS_TOKEN", SAS, "sas")):
        landing = {"AZURE_STORAGE_ACCOUNT_NAME": "landingacct", var: value}
        conf = abfs_conf(LAKE, landing)
        assert conf.mode == "cluster" and dict(conf) == {}
        with pytest.raises(ValueError, match="AZURE_STORAGE_ACCOUNT_NAME") as refused:
            abfs_conf(LAKE, {**landing, "SNDS_LAKE_AUTH": mode})
        assert value not in str(refused.value)
        assert abfs_conf(LAKE, {**landing, "AZURE_STORAGE_ACCOUNT_NAME": "snds"}).mode == mode
        assert abfs_conf(LAKE, {var: value}).mode == mode


def test_sas_settings_use_the_fixed_token():
    conf = abfs_conf(LAKE, {"AZURE_STORAGE_SAS_TOKEN": "?" + SAS})
    assert conf.mode == "sas"
    assert dict(conf) == {
        f"fs.azure.account.auth.type.{HOST}": "SAS",
        f"fs.azure.sas.fixed.token.{HOST}": SAS,  # the leading '?' of a copied SAS URL query is dropped
    }
    via_connection = abfs_conf(LAKE, {"AZURE_STORAGE_CONNECTION_STRING":
                                      f"BlobEndpoint=https://snds.blob.core.windows.net/;SharedAccessSignature={SAS}"})
    assert via_connection == conf


def test_service_principal_oauth_settings():
    env = {"AZURE_CLIENT_ID": CLIENT, "AZURE_CLIENT_SECRET": CLIENT_SECRET, "AZURE_TENANT_ID": TENANT,
           "AZURE_STORAGE_ACCOUNT_KEY": KEY, "AZURE_STORAGE_SAS_TOKEN": SAS}
    conf = abfs_conf(LAKE, env)
    assert conf.mode == "oauth"  # the most restricted credentials win when several are set
    assert dict(conf) == {
        f"fs.azure.account.auth.type.{HOST}": "OAuth",
        f"fs.azure.account.oauth.provider.type.{HOST}": "org.apache.hadoop.fs.azurebfs.oauth2.ClientCredsTokenProvider",
        f"fs.azure.account.oauth2.client.id.{HOST}": CLIENT,
        f"fs.azure.account.oauth2.client.secret.{HOST}": CLIENT_SECRET,
        f"fs.azure.account.oauth2.client.endpoint.{HOST}": f"https://login.microsoftonline.com/{TENANT}/oauth2/token",
    }
    adlfs_names = {"AZURE_STORAGE_CLIENT_ID": CLIENT, "AZURE_STORAGE_CLIENT_SECRET": CLIENT_SECRET,
                   "AZURE_STORAGE_TENANT_ID": TENANT, "AZURE_AUTHORITY_HOST": "login.microsoftonline.us"}
    sovereign = abfs_conf(LAKE, adlfs_names)
    assert sovereign[f"fs.azure.account.oauth2.client.endpoint.{HOST}"] == \
        f"https://login.microsoftonline.us/{TENANT}/oauth2/token"


def test_explicit_mode_managed_identity_and_cluster():
    env = {"AZURE_CLIENT_ID": CLIENT, "AZURE_CLIENT_SECRET": CLIENT_SECRET, "AZURE_TENANT_ID": TENANT,
           "AZURE_STORAGE_ACCOUNT_KEY": KEY}
    assert abfs_conf(LAKE, {**env, "SNDS_LAKE_AUTH": "key"}).mode == "key"
    msi = abfs_conf(LAKE, {**env, "SNDS_LAKE_AUTH": "msi"})
    assert dict(msi) == {
        f"fs.azure.account.auth.type.{HOST}": "OAuth",
        f"fs.azure.account.oauth.provider.type.{HOST}": "org.apache.hadoop.fs.azurebfs.oauth2.MsiTokenProvider",
        f"fs.azure.account.oauth2.msi.tenant.{HOST}": TENANT,
        f"fs.azure.account.oauth2.client.id.{HOST}": CLIENT,
    }
    assert dict(abfs_conf(LAKE, env, auth="cluster")) == {}
    assert abfs_conf(LAKE, {}).mode == "cluster"


def test_missing_or_unknown_mode_names_variables_never_values():
    with pytest.raises(ValueError) as missing:
        abfs_conf(LAKE, {"SNDS_LAKE_AUTH": "oauth", "AZURE_CLIENT_ID": CLIENT, "AZURE_CLIENT_SECRET": CLIENT_SECRET})
    assert "AZURE_TENANT_ID" in str(missing.value) and CLIENT_SECRET not in str(missing.value)
    with pytest.raises(ValueError, match="not one of oauth, sas, key, msi, cluster"):
        abfs_conf(LAKE, {"SNDS_LAKE_AUTH": "password"})


@pytest.mark.parametrize("env", [
    {"AZURE_STORAGE_ACCOUNT_KEY": KEY},
    {"AZURE_STORAGE_SAS_TOKEN": SAS},
    {"AZURE_CLIENT_ID": CLIENT, "AZURE_CLIENT_SECRET": CLIENT_SECRET, "AZURE_TENANT_ID": TENANT},
], ids=["key", "sas", "oauth"])
def test_secrets_are_redacted_in_repr_str_and_logs(env, caplog):
    conf = abfs_conf(LAKE, env)
    shown = [repr(conf), str(conf), conf.describe(), repr(conf.redacted()), f"{conf}"]
    for text in shown:
        assert not any(secret in text for secret in SECRETS), text
        assert HOST in text and conf.mode in text
    assert azure.REDACTED in repr(conf)
    with caplog.at_level(logging.DEBUG, logger="snds_assets"):
        spark_conf = lake_session_conf(LAKE, None, env)
    assert caplog.text and not any(secret in caplog.text for secret in SECRETS)
    # Spark itself gets the real values, as spark.hadoop.* keys, and masks them in its UI and event logs.
    assert {k[len("spark.hadoop."):]: v for k, v in spark_conf.items() if k.startswith("spark.hadoop.")} == dict(conf)
    import re

    pattern = re.compile(spark_conf["spark.redaction.regex"])
    assert all(pattern.search(k) for k in spark_conf if is_secret_setting(k))


def test_session_conf_is_for_a_local_session_on_an_abfss_lake_only(caplog):
    env = {"AZURE_STORAGE_ACCOUNT_KEY": KEY}
    assert lake_session_conf("/data/lake", None, env) == {}
    assert lake_session_conf("az://lake/prod", None, env) == {}
    with caplog.at_level(logging.INFO, logger="snds_assets"):
        assert lake_session_conf(LAKE, "sc://spark.internal:15002", env) == {}
    assert "the cluster holds the ABFS credentials" in caplog.text and KEY not in caplog.text


def test_spark_resource_applies_the_lake_settings(monkeypatch):
    """The resource reads credentials when the run starts (never in its own, visible, config)."""
    from snds_assets import spark as spark_mod

    calls = []
    monkeypatch.setattr(spark_mod, "build_session", lambda master, remote, conf: calls.append((remote, conf)))
    monkeypatch.setenv("SNDS_LAKE", LAKE)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", KEY)
    resource = spark_mod.SparkResource(conf={"spark.sql.shuffle.partitions": "3"})
    resource.get_session()
    spark_mod.SparkResource(remote="sc://spark.internal:15002").get_session()
    (local_remote, local_conf), (remote, remote_conf) = calls
    assert local_remote is None and local_conf[f"spark.hadoop.fs.azure.account.key.{HOST}"] == KEY
    assert local_conf["spark.sql.shuffle.partitions"] == "3"
    assert remote == "sc://spark.internal:15002" and not any("fs.azure" in k for k in remote_conf)
    assert KEY not in repr(resource)


def test_spark_remote_and_its_token_stay_out_of_the_definitions(monkeypatch):
    """SPARK_REMOTE is read when the run starts: a Databricks URL's token never reaches the UI's resource config."""
    from snds_assets import spark as spark_mod
    from snds_assets.config import Settings
    from snds_assets.definitions import build_definitions

    url = "sc://adb-1.azuredatabricks.net:443/;token=dapiSECRET123"
    monkeypatch.setenv("SPARK_REMOTE", url)
    defs = build_definitions(Settings.from_env())
    resource = defs.resources["spark"]
    assert resource.remote is None and "dapiSECRET123" not in repr(resource)
    calls = []
    monkeypatch.setattr(spark_mod, "build_session", lambda master, remote, conf: calls.append(remote))
    resource.get_session()
    assert calls == [url]


# --- The landing zone on Azure Blob (Azurite) --------------------------------------------------------------------
CONTAINER = "landing"
PREFIX = "cnam"


@pytest.fixture()
def az_env(azurite, monkeypatch):
    """SNDS_LANDING on Azurite, credentials from the standard variable; a fresh prefix per test."""
    from adlfs import AzureBlobFileSystem

    service = azurite.blob_service()
    if not service.get_container_client(CONTAINER).exists():
        service.create_container(CONTAINER)
    for blob in list(service.get_container_client(CONTAINER).list_blobs(name_starts_with=f"{PREFIX}/")):
        service.get_container_client(CONTAINER).delete_blob(blob.name)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    AzureBlobFileSystem.clear_instance_cache()  # adlfs instances keep the credentials they were built with
    yield service.get_container_client(CONTAINER)
    AzureBlobFileSystem.clear_instance_cache()


def upload(container, folder: Path, delivery_id: str, manifest: bool = True, skip: tuple[str, ...] = ()) -> list[str]:
    """Upload a local delivery folder as CNAM would: data files first, manifest.json last (unless told not to)."""
    names = []
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json")
    if manifest:
        files.append(folder / "manifest.json")
    for path in files:
        rel = path.relative_to(folder).as_posix()
        if rel in skip:
            continue
        name = f"{PREFIX}/{delivery_id}/{rel}"
        with path.open("rb") as data:
            container.upload_blob(name, data, overwrite=True)
        names.append(name)
    return names


def az_landing() -> str:
    return f"az://{CONTAINER}/{PREFIX}"


def hand_delivery(tmp_path: Path, catalog: Catalog, delivery_id: str) -> Delivery:
    cols = list(catalog["IR_BEN_R"].columns)
    delivery = Delivery(tmp_path / "local-landing", delivery_id)
    delivery.add("IR_BEN_R", "IR_BEN_R/part-1.csv.gz", csv_bytes(cols, dummy_rows(cols, 5)), gz=True)
    delivery.add("IR_BEN_R", "IR_BEN_R/part-2.csv", csv_bytes(cols, dummy_rows(cols, 3, start=5)))
    delivery.write()
    return delivery


def test_landing_listing_and_manifest_on_azure(az_env, tmp_path):
    catalog = Catalog.load(Settings.from_env(env={}).schemas)
    complete = hand_delivery(tmp_path, catalog, "2026-11-15")
    upload(az_env, complete.folder, "2026-11-15")
    uploading = hand_delivery(tmp_path / "b", catalog, "2026-11-16")
    upload(az_env, uploading.folder, "2026-11-16", manifest=False)
    az_env.upload_blob(f"{PREFIX}/notes/readme.txt", b"not a delivery")

    entries = {e.delivery_id: e for e in list_deliveries(az_landing())}
    assert entries["2026-11-15"].complete
    assert not entries["2026-11-16"].complete and "no manifest.json yet" in entries["2026-11-16"].reason
    assert not entries["notes"].complete
    manifest = read_manifest(az_landing(), "2026-11-15")
    assert [f.path for t in manifest.tables for f in t.files] == ["IR_BEN_R/part-1.csv.gz", "IR_BEN_R/part-2.csv"]
    assert unlisted_files(az_landing(), manifest) == []
    az_env.upload_blob(f"{PREFIX}/2026-11-15/extra/notes.txt", b"not listed")
    az_env.upload_blob(f"{PREFIX}/2026-11-15/.hidden", b"")
    assert unlisted_files(az_landing(), manifest) == ["extra/notes.txt"]


def test_lake_file_versions_and_parquet_footers_on_azure(az_env, tmp_path):
    """A rewritten blob gets a new version stamp (report cache); Parquet row counts and value ranges come from
    the footers."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = f"az://{CONTAINER}/{PREFIX}/lake"
    write_lake_bytes(f"{folder}/reports/a.json", b'{"delivery_id": "a"}')
    first = lake_file_versions(f"{folder}/reports", ".json")
    assert list(first) == [f"{folder}/reports/a.json"]
    write_lake_bytes(f"{folder}/reports/a.json", b'{"delivery_id": "b"}')  # same size, within the same second
    assert lake_file_versions(f"{folder}/reports", ".json")[f"{folder}/reports/a.json"] != first[f"{folder}/reports/a.json"]

    for name, rows in (("part-0.parquet", 3), ("part-1.parquet", 4)):
        local = tmp_path / name
        pq.write_table(pa.table({"BEN_IDT_ANO": [str(i) for i in range(rows)],
                                 "BEN_RNG_GEM": pa.array(range(rows), pa.int32())}), local)
        az_env.upload_blob(f"{PREFIX}/lake/curated/IR_BEN_R/{name}", local.read_bytes())
    az_env.upload_blob(f"{PREFIX}/lake/curated/IR_BEN_R/_SUCCESS", b"")
    summary = parquet_summary(f"{folder}/curated/IR_BEN_R")
    assert summary.rows == 7 and summary.ranges["BEN_RNG_GEM"] == ValueRange(0, 3, False, "INT")
    assert parquet_summary(f"{folder}/curated/IR_IBA_R").rows == 0


def test_project_folders_are_listed_afresh_on_azure(az_env):
    """Provision drops the family folders a project no longer gets: a folder written since the last listing
    (by Spark, another run) must be seen, not hidden by adlfs' listing cache."""
    from snds_assets.provision import storage as provision_storage

    project = f"az://{CONTAINER}/{PREFIX}/lake/projects/P1"
    az_env.upload_blob(f"{PREFIX}/lake/projects/P1/ER_PRS_F/part-0.parquet", b"x")
    assert provision_storage.list_dirs(project) == ["ER_PRS_F"]
    az_env.upload_blob(f"{PREFIX}/lake/projects/P1/IR_BEN_R/part-0.parquet", b"x")
    assert provision_storage.list_dirs(project) == ["ER_PRS_F", "IR_BEN_R"]


def test_a_staged_folder_is_published_beside_its_place_on_azure(az_env):
    """The staged folder is a hidden sibling of the target, never listed as an extract; publishing over an
    earlier extract leaves the new files only."""
    from snds_assets.lake import staging_beside
    from snds_assets.provision import storage as provision_storage

    project = f"az://{CONTAINER}/{PREFIX}/lake/projects/P2"
    az_env.upload_blob(f"{PREFIX}/lake/projects/P2/ER_PRS_F/part-0.parquet", b"old")
    staged = staging_beside(f"{project}/ER_PRS_F", "t1")
    assert staged == f"{project}/.ER_PRS_F.staging-t1"
    provision_storage.write_bytes(f"{staged}/part-0.parquet", b"new")
    assert provision_storage.list_dirs(project) == ["ER_PRS_F"]
    provision_storage.publish_dir(staged, f"{project}/ER_PRS_F")
    assert provision_storage.read_bytes(f"{project}/ER_PRS_F/part-0.parquet") == b"new"
    names = [b.name for b in az_env.list_blobs(name_starts_with=f"{PREFIX}/lake/projects/P2/")]
    assert names == [f"{PREFIX}/lake/projects/P2/ER_PRS_F/part-0.parquet"], names


def test_what_killed_runs_staged_is_found_and_removed_on_azure(az_env):
    """Blob stores have no folders: staged writes are found by the names of their blobs' prefixes."""
    from snds_assets.lake import Lake
    from snds_assets.scratch import delivery_scratch, drop_empty_staging, project_scratch, sweep

    lake = Lake(f"az://{CONTAINER}/{PREFIX}/lake")
    hexa = "0123456789abcdef" * 2
    for name in (f"_staging/raw/2026-11-15/{hexa}/IR_BEN_R.csv", f"_staging/curation/2026-11-15/IR_BEN_R/{hexa}/x",
                 f"curated/IR_BEN_R/.delivery_id=2026-11-15.old-{hexa}/part-0.parquet",
                 "curated/IR_BEN_R/delivery_id=2026-11-15/part-0.parquet",
                 f"curated/IR_BEN_R/.delivery_id=2026-12-01.old-{hexa}/part-0.parquet",
                 f"projects/P3/.ER_PRS_F.staging-{hexa}/part-0.parquet", "projects/P3/ER_PRS_F/part-0.parquet",
                 f"restricted/projects/P3/.correspondence.old-{hexa}/part-0.parquet"):
        az_env.upload_blob(f"{PREFIX}/lake/{name}", b"x")
    found = (delivery_scratch(lake, "2026-11-15", ["IR_BEN_R", "ER_PRS_F"])
             + project_scratch(lake, "P3", ["correspondence"]))
    assert [p.split("/lake/", 1)[1] for p in found] == [
        "_staging/raw/2026-11-15", "_staging/curation/2026-11-15",
        f"curated/IR_BEN_R/.delivery_id=2026-11-15.old-{hexa}",
        f"projects/P3/.ER_PRS_F.staging-{hexa}", f"restricted/projects/P3/.correspondence.old-{hexa}"]

    class Log:
        def info(self, message):
            pass

    sweep(found, [], Log(), "delivery 2026-11-15")
    drop_empty_staging(lake, "2026-11-15")
    names = sorted(b.name.split("/lake/", 1)[1] for b in az_env.list_blobs(name_starts_with=f"{PREFIX}/lake/"))
    assert names == [f"curated/IR_BEN_R/.delivery_id=2026-12-01.old-{hexa}/part-0.parquet",
                     "curated/IR_BEN_R/delivery_id=2026-11-15/part-0.parquet", "projects/P3/ER_PRS_F/part-0.parquet"]


def test_a_curated_partition_is_published_over_the_earlier_one_on_azure(az_env):
    """fsspec's ``mv`` of a folder copied the folder itself as a blob, which does not exist on a flat namespace: the
    publication of a partition failed there. The new files replace the old, nothing staged or moved aside is left."""
    from snds_assets.curation.publish import publish

    lake = f"az://{CONTAINER}/{PREFIX}/lake"
    for name, data in (("curated/IR_BEN_R/delivery_id=2026-11-15/part-0.parquet", b"old"),
                       ("curated/IR_BEN_R/delivery_id=2026-11-15/part-1.parquet", b"old"),
                       ("_staging/curation/2026-11-15/t/curated/part-0.parquet", b"new")):
        az_env.upload_blob(f"{PREFIX}/lake/{name}", data)
    publish(f"{lake}/_staging/curation/2026-11-15/t/curated", f"{lake}/curated/IR_BEN_R/delivery_id=2026-11-15")
    blobs = {b.name.split("/lake/", 1)[1]: b for b in az_env.list_blobs(name_starts_with=f"{PREFIX}/lake/")}
    assert list(blobs) == ["curated/IR_BEN_R/delivery_id=2026-11-15/part-0.parquet"]
    assert az_env.download_blob(f"{PREFIX}/lake/curated/IR_BEN_R/delivery_id=2026-11-15/part-0.parquet").readall() == b"new"


def test_a_family_no_longer_delivered_loses_its_partitions_on_azure(az_env, tmp_path):
    """On a blob store the lake's folders are blob-name prefixes: the dropped family's partitions are found and
    removed (nothing moved aside left), the other deliveries' and families' kept, the report withdrawn."""
    from snds_assets.curation.publish import drop_undelivered
    from snds_assets.reception.archive import archived_manifest
    from snds_assets.reception.report import unfinished_receptions

    settings = Settings.from_env(env={}, home=str(tmp_path / "snds"), landing=az_landing(),
                                 lake=f"az://{CONTAINER}/{PREFIX}/lake")
    catalog = Catalog.load(settings.schemas)
    upload(az_env, hand_delivery(tmp_path, catalog, "2026-11-15").folder, "2026-11-15")
    manifest = read_manifest(settings.landing, "2026-11-15")
    kept = ["curated/IR_BEN_R/delivery_id=2026-11-15/part-0.parquet",
            "curated/IR_IMB_R/delivery_id=2026-12-01/part-0.parquet", "reports/deliveries/_parts/x.json"]
    dropped = ["curated/IR_IMB_R/delivery_id=2026-11-15/part-0.parquet",
               "rejects/IR_IMB_R/delivery_id=2026-11-15/part-0.parquet"]
    for name in kept + dropped + ["reports/deliveries/2026-11-15.json"]:
        az_env.upload_blob(f"{PREFIX}/lake/{name}", b"x")
    received = json.loads((tmp_path / "local-landing" / "2026-11-15" / "manifest.json").read_text())
    first = received["tables"][0]  # the earlier reception's manifest had IR_IMB_R too, in a file of its own
    received["tables"].append({**first, "table": "IR_IMB_R", "files": [{**first["files"][0], "path": "IR_IMB_R.csv"}]})
    az_env.upload_blob(f"{PREFIX}/lake/raw/2026-11-15/manifest.json", json.dumps(received).encode())
    kept.append("raw/2026-11-15/manifest.json")
    earlier = archived_manifest(settings, "2026-11-15")
    assert unfinished_receptions(settings) == []  # reported
    assert sorted(p.split("/lake/", 1)[1] for p in drop_undelivered(settings, catalog, manifest, earlier)) == [
        "curated/IR_IMB_R/delivery_id=2026-11-15", "rejects/IR_IMB_R/delivery_id=2026-11-15"]
    names = sorted(b.name.split("/lake/", 1)[1] for b in az_env.list_blobs(name_starts_with=f"{PREFIX}/lake/"))
    assert names == sorted(kept + ["reports/deliveries/_parts/2026-11-15/_previous.json"]), names
    assert unfinished_receptions(settings) == ["2026-11-15"]  # its report withdrawn: out of the state until received


def test_the_project_secret_is_created_once_on_azure(az_env, monkeypatch):
    """Two first runs of a project racing: the store itself refuses the second secret, whatever either saw."""
    from adlfs import AzureBlobFileSystem

    from snds_assets.provision import storage as provision_storage

    path = f"az://{CONTAINER}/{PREFIX}/lake/restricted/projects/P1/secret.key"
    monkeypatch.setattr(AzureBlobFileSystem, "exists", lambda self, p, **kw: False)  # both checked before writing
    assert provision_storage.write_bytes(path, b"first", private=True, exclusive=True)
    assert not provision_storage.write_bytes(path, b"second", private=True, exclusive=True)
    assert az_env.download_blob(f"{PREFIX}/lake/restricted/projects/P1/secret.key").readall() == b"first"


def test_raw_archive_streams_from_azure_byte_identical(az_env, tmp_path):
    """The raw step copies az:// files into a local lake, hashing and counting on the way."""
    settings = Settings.from_env(env={}, home=str(tmp_path / "snds"), landing=az_landing())
    catalog = Catalog.load(settings.schemas)
    delivery = hand_delivery(tmp_path, catalog, "2026-11-15")
    upload(az_env, delivery.folder, "2026-11-15", skip=("IR_BEN_R/part-2.csv",))  # listed, never uploaded
    manifest = read_manifest(settings.landing, "2026-11-15")
    archive_manifest(settings, "2026-11-15")
    (table,) = archive_family(settings, catalog, manifest, "IR_BEN_R")

    lake = Path(settings.lake) / "raw" / "2026-11-15"
    assert (lake / "manifest.json").read_bytes() == (delivery.folder / "manifest.json").read_bytes()
    assert (lake / "IR_BEN_R/part-1.csv.gz").read_bytes() == (delivery.folder / "IR_BEN_R/part-1.csv.gz").read_bytes()
    first, second = table.files
    assert (first.present, first.readable, first.rows) == (True, True, 5)
    assert first.sha256 == hashlib.sha256((delivery.folder / "IR_BEN_R/part-1.csv.gz").read_bytes()).hexdigest()
    assert (second.present, second.rows) == (False, None) and not (lake / "IR_BEN_R/part-2.csv").exists()
    present = table.check("file_present")
    assert not present.passed and present.failures == 1 and present.sample[0]["path"] == "IR_BEN_R/part-2.csv"
    assert table.check("checksum").passed and table.check("row_count").passed


def test_blobs_uploaded_with_a_content_encoding_are_archived_as_stored(az_env, tmp_path):
    """azcopy --content-encoding gzip (and other upload tools) mark .gz blobs `Content-Encoding: gzip`, which Azure's
    client undoes on download: the archive held the CSV text cut to the blob's size under the .gz name, and a
    correct delivery failed file_present and checksum. The bytes are read as stored."""
    from azure.storage.blob import ContentSettings

    settings = Settings.from_env(env={}, home=str(tmp_path / "snds"), landing=az_landing())
    catalog = Catalog.load(settings.schemas)
    delivery = hand_delivery(tmp_path, catalog, "2026-11-16")
    upload(az_env, delivery.folder, "2026-11-16", manifest=False)
    gz = delivery.folder / "IR_BEN_R/part-1.csv.gz"
    with gz.open("rb") as data:
        az_env.upload_blob(f"{PREFIX}/2026-11-16/IR_BEN_R/part-1.csv.gz", data, overwrite=True,
                           content_settings=ContentSettings(content_type="text/csv", content_encoding="gzip"))
    with (delivery.folder / "manifest.json").open("rb") as data:
        az_env.upload_blob(f"{PREFIX}/2026-11-16/manifest.json", data, overwrite=True,
                           content_settings=ContentSettings(content_type="application/json", content_encoding="gzip"))
    manifest = read_manifest(settings.landing, "2026-11-16")
    archive_manifest(settings, "2026-11-16")
    (table,) = archive_family(settings, catalog, manifest, "IR_BEN_R")

    assert (Path(settings.lake) / "raw/2026-11-16/IR_BEN_R/part-1.csv.gz").read_bytes() == gz.read_bytes()
    assert [(f.present, f.readable, f.rows) for f in table.files] == [(True, True, 5), (True, True, 3)]
    assert table.check("file_present").passed and table.check("checksum").passed and table.check("row_count").passed


def test_raw_archive_keeps_any_file_name_on_an_object_storage_lake(az_env, tmp_path):
    """Spaces, accents and glob characters in a delivered file name: the archive on object storage is at the
    same name, byte-identical (fsspec's mv globbed ``?`` and ``[1]`` and filed the blob under a folder)."""
    lake = f"abfss://{CONTAINER}@devstoreaccount1.dfs.core.windows.net/{PREFIX}/lake"
    settings = Settings.from_env(env={}, home=str(tmp_path / "snds"), landing=az_landing(), lake=lake)
    catalog = Catalog.load(settings.schemas)
    cols = list(catalog["IR_BEN_R"].columns)
    delivery = Delivery(tmp_path / "local-landing", "2026-11-15")
    names = ["IR_BEN_R/part 1 é.csv", "IR_BEN_R/part?2.csv", "IR_BEN_R/part[3].csv"]
    for i, name in enumerate(names):
        delivery.add("IR_BEN_R", name, csv_bytes(cols, dummy_rows(cols, 2, start=2 * i)))
    delivery.write()
    upload(az_env, delivery.folder, "2026-11-15")
    manifest = read_manifest(settings.landing, "2026-11-15")
    (table,) = archive_family(settings, catalog, manifest, "IR_BEN_R")

    assert all(f.present and f.readable and f.rows == 2 for f in table.files)
    archived = {b.name for b in az_env.list_blobs(name_starts_with=f"{PREFIX}/lake/raw/")}
    assert archived == {f"{PREFIX}/lake/raw/2026-11-15/{name}" for name in names}
    for name in names:
        blob = az_env.download_blob(f"{PREFIX}/lake/raw/2026-11-15/{name}").readall()
        assert blob == (delivery.folder / name).read_bytes()
    assert not list(az_env.list_blobs(name_starts_with=f"{PREFIX}/lake/_staging/"))


def test_a_lake_on_another_account_never_gets_the_landing_credentials(az_env, monkeypatch):
    """adlfs uses AZURE_STORAGE_CONNECTION_STRING for every URL, whatever account it names: a lake on another
    account was written to the landing's account, in a container of the lake's name. It is refused with one line
    that names the variable and the accounts, never a value."""
    other = f"abfss://{CONTAINER}@sndslake.dfs.core.windows.net/{PREFIX}/lake/reports/a.json"
    with pytest.raises(StorageError, match="sndslake: AZURE_STORAGE_CONNECTION_STRING is for account "
                                           "devstoreaccount1") as refused:
        write_lake_bytes(other, b"{}")
    assert AZURITE_KEY not in str(refused.value)
    assert not list(az_env.list_blobs(name_starts_with=f"{PREFIX}/lake/"))

    same = f"abfss://{CONTAINER}@devstoreaccount1.dfs.core.windows.net/{PREFIX}/lake/reports/a.json"
    write_lake_bytes(same, b"{}")
    assert az_env.download_blob(f"{PREFIX}/lake/reports/a.json").readall() == b"{}"

    # An account key (or SAS token) is made for AZURE_STORAGE_ACCOUNT_NAME's account: never sent to another one.
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "landingacct")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", KEY)
    with pytest.raises(StorageError, match="AZURE_STORAGE_ACCOUNT_KEY is for account landingacct") as refused:
        filesystem(other)
    assert KEY not in str(refused.value)


def test_a_lake_of_a_sovereign_cloud_is_reached_at_its_own_endpoint(monkeypatch):
    """adlfs reads the account of an abfss:// URL from a ``.core.windows.net`` host only: a lake on a sovereign
    cloud went to AZURE_STORAGE_ACCOUNT_NAME's account (the landing's) on the public cloud, a container of the
    lake's name there. It is given the URL's account and its cloud's Blob endpoint."""
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "landingacct")
    fs, path = filesystem("abfss://lake@chinalake.dfs.core.chinacloudapi.cn/prod/snds")
    assert (fs.account_name, fs.account_url, path) == (
        "chinalake", "https://chinalake.blob.core.chinacloudapi.cn", "lake/prod/snds")
    fs, path = filesystem("abfss://lake@publiclake.dfs.core.windows.net/prod")
    assert (fs.account_name, fs.account_url, path) == ("publiclake", "https://publiclake.blob.core.windows.net",
                                                       "lake/prod")
    assert azure.adlfs_options("az://landing/prod") == {}


def _sensor_tick(cursor=None):
    from snds_assets.definitions import build_definitions

    defs = build_definitions(Settings.from_env())
    sensor = next(s for s in defs.sensors if s.name == "cnam_deliveries")
    instance = DagsterInstance.ephemeral()
    context = build_sensor_context(instance=instance, cursor=cursor, resources={"snds": defs.resources["snds"]})
    return sensor(context)


def test_sensor_waits_for_the_manifest_on_azure(az_env, tmp_path, snds_env, monkeypatch):
    monkeypatch.setenv("SNDS_LANDING", az_landing())
    catalog = Catalog.load(Settings.from_env().schemas)
    delivery = hand_delivery(tmp_path, catalog, "2026-11-15")
    upload(az_env, delivery.folder, "2026-11-15", manifest=False)

    still_uploading = _sensor_tick()
    assert not still_uploading.run_requests
    assert "no new complete delivery" in str(still_uploading.skip_reason)

    upload(az_env, delivery.folder, "2026-11-15")
    picked = _sensor_tick(still_uploading.cursor)
    assert [r.partition_key for r in picked.run_requests] == ["2026-11-15"]
    assert picked.run_requests[0].tags["snds/delivery"] == "2026-11-15"
    assert picked.dynamic_partitions_requests[0].partition_keys == ["2026-11-15"]
    assert not _sensor_tick(picked.cursor).run_requests  # once per manifest

    # A manifest handled is not downloaded again at every tick: its ETag tells whether it was rewritten.
    from snds_assets.reception import storage

    read, real = [], storage.read_manifest
    monkeypatch.setattr(storage, "read_manifest", lambda *a: read.append(a[1]) or real(*a))
    assert not _sensor_tick(picked.cursor).run_requests and read == []
    upload(az_env, delivery.folder, "2026-11-15")  # the same manifest uploaded again: a new ETag
    assert not _sensor_tick(picked.cursor).run_requests and read == ["2026-11-15"]
    monkeypatch.setattr(storage, "read_manifest", real)

    # A folder that appears after a tick is seen at the next one (the listing is not answered from adlfs' cache).
    later = hand_delivery(tmp_path / "later", catalog, "2026-11-16")
    upload(az_env, later.folder, "2026-11-16")
    assert [r.partition_key for r in _sensor_tick(picked.cursor).run_requests] == ["2026-11-16"]


def test_generate_uploads_a_delivery_to_an_azure_landing(az_env, tmp_path, monkeypatch, capsys):
    """`snds generate --out az://...`: written in TMPDIR, uploaded manifest last, nothing left behind; a delivery
    id already used is refused before anything is generated."""
    from adlfs import AzureBlobFileSystem

    from snds_assets.cli import main

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr("tempfile.tempdir", None)
    uploaded = []
    put_file = AzureBlobFileSystem.put_file
    monkeypatch.setattr(AzureBlobFileSystem, "put_file", lambda fs, lpath, rpath, **k: uploaded.append(rpath)
                        or put_file(fs, lpath, rpath, **k))
    args = ["generate", "--home", str(tmp_path / "home"), "--out", az_landing(), "--delivery-id", "2026-11-20",
            "--patients", "30", "--tables", "IR_BEN_R,ER_PRS_F", "--gzip", "--defects"]
    assert main(args) == 0
    assert f"rows in {az_landing()}/2026-11-20" in capsys.readouterr().out
    assert uploaded[-2].endswith("2026-11-20/manifest.json") and uploaded[-1].endswith("2026-11-20.defects.json")
    assert list(scratch.iterdir()) == []

    assert {e.delivery_id: e.complete for e in list_deliveries(az_landing())} == {"2026-11-20": True}
    manifest = read_manifest(az_landing(), "2026-11-20")
    assert {t.table for t in manifest.tables} == {"IR_BEN_R", "ER_PRS_F"}
    for table in manifest.tables:
        for f in table.files:
            data = az_env.download_blob(f"{PREFIX}/2026-11-20/{f.path}").readall()
            assert f.path.endswith(".csv.gz") and hashlib.sha256(data).hexdigest() == f.sha256 and len(data) == f.bytes
    truth = json.loads(az_env.download_blob(f"{PREFIX}/2026-11-20.defects.json").readall())
    assert truth["delivery_id"] == "2026-11-20" and truth["defects"]

    uploaded.clear()
    assert main(args) != 0
    assert "already exists" in capsys.readouterr().err and uploaded == []


def test_generate_stopped_during_its_upload_leaves_no_folder_in_an_azure_landing(az_env, tmp_path, monkeypatch,
                                                                                 capsys):
    """Ctrl-C during `snds generate --out az://...`'s upload left the data files uploaded so far, without a manifest:
    the sensor waited for it at every tick and the delivery id stayed used. What was uploaded is removed."""
    from adlfs import AzureBlobFileSystem

    from snds_assets.cli import main

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    put_file, calls = AzureBlobFileSystem.put_file, []

    def interrupted(fs, lpath, rpath, **kwargs):
        calls.append(rpath)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return put_file(fs, lpath, rpath, **kwargs)

    monkeypatch.setattr(AzureBlobFileSystem, "put_file", interrupted)
    args = ["generate", "--home", str(tmp_path / "home"), "--out", az_landing(), "--delivery-id", "2026-11-21",
            "--patients", "30", "--tables", "IR_BEN_R,ER_PRS_F,ER_PHA_F"]
    assert main(args) == 2
    assert "interrupted" in capsys.readouterr().err and len(calls) == 3
    assert [b.name for b in az_env.list_blobs(name_starts_with=f"{PREFIX}/2026-11-21")] == []
    monkeypatch.setattr(AzureBlobFileSystem, "put_file", put_file)
    AzureBlobFileSystem.clear_instance_cache()
    assert main(args) == 0  # the id is free again


# --- End to end: generate, upload, sense, ingest --------------------------------------------------------------
@pytest.mark.slow
def test_delivery_from_azure_ingests_like_a_local_one(reference, az_env, azurite, tmp_path, snds_env, monkeypatch):
    names = upload(az_env, reference.delivery, DELIVERY_ID)
    assert names[-1] == f"{PREFIX}/{DELIVERY_ID}/manifest.json"
    home = tmp_path / "azure-home"
    monkeypatch.setenv("SNDS_LANDING", az_landing())
    picked = _sensor_tick()
    assert [r.partition_key for r in picked.run_requests] == [DELIVERY_ID]

    code = ingest_in_process(home, DELIVERY_ID, SNDS_LANDING=az_landing(),
                             AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string)
    assert code == reference.exit_code
    lake = home / "lake"
    report = load_report(lake, DELIVERY_ID)
    assert report == reference.report
    curated = curated_summary(lake, DELIVERY_ID)
    assert {f: (s["curated_rows"], s.get("rejects_rows", 0)) for f, s in curated.items()} == \
        {f: (s["curated_rows"], s.get("rejects_rows", 0)) for f, s in reference.curated.items()}
    assert curated == reference.curated
    for path in reference.delivery.rglob("*"):
        if path.is_file():
            archived = lake / "raw" / DELIVERY_ID / path.relative_to(reference.delivery)
            assert archived.read_bytes() == path.read_bytes(), path


@pytest.mark.slow
def test_file_missing_in_the_container_is_reported(az_env, azurite, tmp_path):
    delivery_id = "2024-03-02"
    folder = generate(tmp_path / "landing", delivery_id, 10, 5, "--tables", "IR_BEN_R,ER_PRS_F")
    manifest = json.loads((folder / "manifest.json").read_text())
    prs = next(t for t in manifest["tables"] if t["table"] == "ER_PRS_F")
    missing = prs["files"][0]["path"]
    upload(az_env, folder, delivery_id, skip=(missing,))

    home = tmp_path / "home"
    code = ingest_in_process(home, delivery_id, SNDS_LANDING=az_landing(),
                             AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string)
    assert code == 1
    report = load_report(home / "lake", delivery_id)
    assert report["status"] == "rejected"
    entry = report["tables"]["ER_PRS_F"]
    present = next(c for c in entry["checks"] if c["name"] == "file_present")
    assert entry["status"] == "rejected" and not present["passed"] and present["failures"] == 1
    assert present["sample"][0]["path"] == missing
    assert report["tables"]["IR_BEN_R"]["status"] == "accepted"


def test_refused_credentials_of_an_azure_landing_are_named(az_env, azurite, tmp_path, snds_env, monkeypatch, capsys):
    """A wrong or expired key said "Operation returned an invalid status 'Server failed to authenticate the
    request…' ErrorCode:AuthorizationFailure", naming neither the landing zone nor the variables to check, on
    `snds ingest`; the delivery sensor's tick failed with Azure's error instead of skipping, saying why."""
    from adlfs import AzureBlobFileSystem

    from snds_assets.cli import main

    delivery_id = "2024-03-03"
    upload(az_env, generate(tmp_path / "landing", delivery_id, 10, 5, "--tables", "IR_BEN_R"), delivery_id)
    wrong = re.sub(r"AccountKey=[^;]*", "AccountKey=" + base64.b64encode(b"not the key").decode(),
                   azurite.connection_string)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", wrong)
    AzureBlobFileSystem.clear_instance_cache()
    assert main(["generate", "--out", az_landing(), "--delivery-id", "2024-03-04", "--patients", "3", "--tables",
                 "IR_BEN_R"]) == 2
    [line] = [text for text in capsys.readouterr().err.splitlines() if text.startswith("snds: error")]
    assert line.startswith(f"snds: error: Azure Storage refused the credentials for --out {az_landing()} ("), line
    monkeypatch.setenv("SNDS_LANDING", az_landing())
    assert main(["ingest", delivery_id]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"snds: error: Azure Storage refused the credentials for SNDS_LANDING {az_landing()} ("), line
    assert "wrong, expired, or without the rights needed; check AZURE_STORAGE_CONNECTION_STRING, or " in line
    assert "not the key" not in line and base64.b64encode(b"not the key").decode() not in line

    tick = _sensor_tick()
    assert not tick.run_requests
    assert tick.skip_reason.skip_message.startswith(f"landing zone unreachable: Azure Storage refused the "
                                                    f"credentials for SNDS_LANDING {az_landing()} ("), tick.skip_reason


def test_an_unreachable_azure_landing_is_named(monkeypatch, snds_env):
    """Azure Storage out of reach (network, proxy, firewall): after the SDK's retries (about 80 s) the sensor's tick
    failed with Azure's ServiceRequestError; it now skips, naming the landing zone, and the manifest's read (`snds
    ingest`) says the same."""
    from azure.core.exceptions import ServiceRequestError

    from snds_assets.reception import storage

    class Unreachable:
        def __getattr__(self, name):
            def call(*args, **kwargs):
                raise ServiceRequestError("Cannot connect to host acct.blob.core.windows.net:443 ssl:default "
                                          "(https://acct.blob.core.windows.net/landing?sv=2022&sig=s3cret)")
            return call

    monkeypatch.setattr(storage, "filesystem", lambda url: (Unreachable(), url.partition("://")[2]))
    monkeypatch.setenv("SNDS_LANDING", "az://landing/cnam")
    said = ("cannot reach Azure Storage for SNDS_LANDING az://landing/cnam (Cannot connect to host "
            "acct.blob.core.windows.net:443 ssl:default (https://acct.blob.core.windows.net/landing?sv=2022&"
            "sig=<redacted>): is the storage account's endpoint reachable from here (network, proxy, firewall)?")
    assert _sensor_tick().skip_reason.skip_message == f"landing zone unreachable: {said}"
    with pytest.raises(StorageError, match="cannot reach Azure Storage"):
        read_manifest("az://landing/cnam", "2024-01-15")


def test_other_azure_errors_on_the_landing_are_told_as_what_to_check():
    """An endpoint that takes connections and never answers, an account key cut short when pasted, a container name
    Azure refuses: `snds ingest` printed the SDK's bare message ("Timeout on reading data from socket", "Incorrect
    padding") after its retries and the sensor's tick failed with a traceback. Each is told, naming the setting."""
    from azure.core.exceptions import HttpResponseError, ServiceResponseTimeoutError
    from azure.storage.blob._shared.authentication import AzureSigningError

    from snds_assets.reception.storage import azure_errors_told

    cases = [
        (ServiceResponseTimeoutError("Timeout on reading data from socket"),
         "Azure Storage did not answer for SNDS_LANDING az://landing/cnam (Timeout on reading data from socket)"),
        (AzureSigningError("Incorrect padding"),
         "the account key for SNDS_LANDING az://landing/cnam cannot sign requests (Incorrect padding): is it whole?"),
        (HttpResponseError(message="Operation returned an invalid status 'The specified resource name contains "
                                   "invalid characters.'\nErrorCode:InvalidResourceName"),
         "SNDS_LANDING az://landing/cnam does not name a valid container"),
    ]
    for error, said in cases:
        with pytest.raises(StorageError) as told:
            with azure_errors_told("az://landing/cnam"):
                raise error
        assert str(told.value).startswith(said), told.value
    with pytest.raises(HttpResponseError):  # one that says what it is already
        with azure_errors_told("az://landing/cnam"):
            raise HttpResponseError(message="The specified blob does not exist.\nErrorCode:BlobNotFound")


def test_generate_names_the_unreachable_landing_it_was_given(monkeypatch, snds_env, capsys):
    """`snds generate --out az://…` out of reach printed Azure's "Cannot connect to host …" alone, pointing to the
    details log as for a bug, where `snds ingest` names the setting and what to check."""
    from azure.core.exceptions import ServiceRequestError

    from snds_assets.cli import main
    from snds_assets.reception import storage

    def unreachable(*args):
        raise ServiceRequestError("Cannot connect to host 127.0.0.1:1 ssl:default [Connect call failed]")

    monkeypatch.setattr(storage, "filesystem", lambda url: (None, url.partition("://")[2]))
    monkeypatch.setattr(storage, "is_local", lambda fs: False)
    monkeypatch.setattr(storage, "delivery_folder_used", unreachable)
    assert main(["generate", "--out", "az://landing/cnam", "--delivery-id", "2024-03-04", "--patients", "3"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "snds: error: cannot reach Azure Storage for --out az://landing/cnam (Cannot connect to host 127.0.0.1:1 "
        "ssl:default [Connect call failed]): is the storage account's endpoint reachable from here (network, proxy, "
        "firewall)?"]


def test_a_silent_azure_landing_skips_the_tick_before_dagster_ends_it(monkeypatch, snds_env):
    """Azure Storage that does not answer: the SDK tries for about 80 s, and Dagster ends a sensor's tick after
    60 s (its timeout, not our reason, was then all the UI said). The listing now gets half the tick's time (the
    tick's timeout halved, 2 s here), then the tick is skipped naming the landing zone. A real adlfs client, on
    a port nobody listens on."""
    import socket

    from adlfs import AzureBlobFileSystem

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"))
    monkeypatch.setenv("SNDS_LANDING", "az://landing/cnam")
    monkeypatch.setenv("DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS", "4")
    AzureBlobFileSystem.clear_instance_cache()
    try:
        tick = _sensor_tick(cursor='{"2024-01-15": {"manifest": "abc", "requests": 1, "version": "1:x"}}')
    finally:
        AzureBlobFileSystem.clear_instance_cache()
    assert tick.skip_reason.skip_message == (
        "landing zone unreachable: no answer from SNDS_LANDING az://landing/cnam within 2 s: is its endpoint "
        "reachable from here (network, proxy, firewall)?")
    assert tick.cursor == '{"2024-01-15": {"manifest": "abc", "requests": 1, "version": "1:x"}}'


def test_answered_within_hands_back_the_result_or_the_error():
    from snds_assets.reception.storage import answered_within

    assert answered_within(5, "a store", sorted, [3, 1, 2]) == [1, 2, 3]
    with pytest.raises(FileNotFoundError, match="gone"):
        answered_within(5, "a store", lambda: (_ for _ in ()).throw(FileNotFoundError("gone")))
