"""The package's layers hold: the import-linter contracts pass and no import cycle exists.

Imports inside functions count (grimp reads every import statement); annotation-only
``TYPE_CHECKING`` imports do not.
"""

import logging

import grimp
import pytest
from importlinter import cli as importlinter_cli


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("rl_platform", exclude_type_checking_imports=True, cache_dir=None)


def test_import_linter_contracts_pass():
    # lint_imports configures logging with dictConfig, which disables every logger that
    # exists: later tests in this process (caplog on rl_platform's loggers) need them back.
    loggers = logging.root.manager.loggerDict.values()
    enabled = [lg for lg in loggers if isinstance(lg, logging.Logger) and not lg.disabled]
    try:
        assert importlinter_cli.lint_imports(no_cache=True) == importlinter_cli.EXIT_STATUS_SUCCESS
    finally:
        for logger in enabled:
            logger.disabled = False


def test_no_import_cycle_inside_the_package(graph):
    # An import closes a cycle when the imported module leads back to the importer.
    closing = sorted(
        (importer, imported)
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if graph.chain_exists(importer=imported, imported=importer)
    )
    assert closing == []


def test_nothing_inside_imports_the_root_facade(graph):
    assert graph.find_modules_that_directly_import("rl_platform") == set()
