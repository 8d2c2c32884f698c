"""The run history's read model is the only reader of the reporter's tables (shared/history/
read_model.py documents the contract): the gateway imports none of their models itself."""

from __future__ import annotations

import ast
from pathlib import Path

from shared.db import models
from shared.history import read_model

ROOT = Path(__file__).resolve().parents[2]
REPORTER_TABLES = {
    "log_build_run",
    "log_build_step",
    "log_build_compile",
    "log_build_compile_set",
    "log_build_image",
    "log_build_scan",
    "log_audit",
    "event_log",
}
REPORTER_MODELS = {
    mapper.class_.__name__
    for mapper in models.Base.registry.mappers
    if mapper.class_.__table__.name in REPORTER_TABLES
}


def test_every_reporter_table_is_in_the_contract():
    assert len(REPORTER_MODELS) == len(REPORTER_TABLES)
    for table in REPORTER_TABLES:
        assert f"`{table}`" in read_model.__doc__


def test_the_gateway_reads_the_reporters_tables_only_through_the_read_model():
    offenders = []
    for path in sorted((ROOT / "services" / "gateway").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == "shared.db.models":
                names = {alias.name for alias in node.names} & REPORTER_MODELS
                offenders += [f"{path.relative_to(ROOT)}: {name}" for name in sorted(names)]
    assert offenders == []
