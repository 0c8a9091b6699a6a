from setuptools import find_namespace_packages, setup

setup(
    name="snds_assets",
    version="0.1.0",
    description="Reception, verification and provision of the SNDS main base as a Dagster code location on Spark",
    packages=find_namespace_packages(include=["snds_assets", "snds_assets.*"]),
    package_data={"snds_assets": ["catalog/schemas/**/*.json", "spark-log4j2.properties"]},
    include_package_data=True,
    python_requires=">=3.11",
    install_requires=[
        "dagster==1.13.27",
        "dagster-webserver==1.13.27",
        "dagster-pyspark==0.29.27",
        "dagster-azure==0.29.27",
        "dagster-postgres==0.29.27",
        "adlfs",
        "pyspark[connect]==4.3.0",
        "pandera[pyspark]",
        "pandas<3",  # PySpark 4.3 supports pandas 2 only (its Spark Connect client warns on pandas 3)
        "pyyaml",
        "pyarrow",
        "numpy",
    ],
    extras_require={
        "dev": ["pytest", "pytest-timeout", "playwright==1.65.2"],
    },
    entry_points={"console_scripts": ["snds=snds_assets.cli:main"]},
)
