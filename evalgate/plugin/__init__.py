"""pytest entry point (`pytest11`). Costs nothing unless `--evalgate` is given: the engine,
httpx, pydantic and scipy are imported only then."""

from __future__ import annotations

import argparse

import pytest

from evalgate.plugin.freezing import thaw


def parse_shard(value: str) -> tuple[int, int]:
    """`I/N` -> (I, N) with 1 <= I <= N; anything else is a usage error (pytest exits 4)."""
    index, sep, total = value.partition("/")
    try:
        i, n = int(index), int(total)
    except ValueError:
        i = n = 0
    if not sep or n < 1 or not 1 <= i <= n:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a shard: expected I/N with 1 <= I <= N, e.g. 1/4")
    return i, n


def parse_concurrency(value: str) -> int:
    """A whole number >= 1; 0 or a negative number is a usage error (pytest exits 4), never
    a hang (no call could start) nor silently the config's value."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a concurrency: expected a whole "
                                         "number >= 1")
    return n


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("evalgate", "evalgate: LLM evaluation gate")
    group.addoption("--evalgate", action="store_true", default=False,
                    help="run the evaluation gate: canaries against the candidate model config")
    group.addoption("--evalgate-config", metavar="FILE", default=None,
                    help="gate config (default: evalgate.yaml or [tool.evalgate] in "
                         "pyproject.toml at the rootdir)")
    group.addoption("--evalgate-concurrency", metavar="N", type=parse_concurrency,
                    default=None,
                    help="concurrent model calls (overrides the gate config)")
    group.addoption("--evalgate-samples", metavar="N", type=int, default=None,
                    help="answers per canary and config (overrides the gate config's samples)")
    group.addoption("--evalgate-report-dir", metavar="DIR", default=None,
                    help="where reports are written (default: the gate config's report.dir, "
                         "'reports')")
    group.addoption("--evalgate-candidates", metavar="A,B,...", default=None,
                    help="model configs to run as the candidates, comma-separated (overrides "
                         "the gate config's 'candidate'/'candidates'; the first is the change "
                         "under review, see gate.require)")
    group.addoption("--evalgate-baseline", metavar="SPEC", default=None,
                    help="compare with a baseline: a model config (run live), a saved result "
                         ".json, or git:<ref>:<path> (overrides the gate config's 'baseline')")
    group.addoption("--evalgate-autosave", action="store_true", default=False,
                    help="save this run to the local store (.evalgate/runs/)")
    group.addoption("--evalgate-compare", metavar="ID", nargs="?", const="", default=None,
                    help="compare with a run in the local store: the newest, or =NUM / =RUN_ID")
    group.addoption("--evalgate-shard", metavar="I/N", type=parse_shard, default=None,
                    help="run only shard I of N: a stable slice of the canaries (by a hash of "
                         "each canary's key, all its samples together); join the shards' "
                         "results with 'evalgate merge'")
    group.addoption("--evalgate-resume", action="store_true", default=False,
                    help="finish an interrupted run (killed or Ctrl-C): reuse the answers in "
                         "its journal (.evalgate/journal/) and make only the missing calls")
    group.addoption("--evalgate-cache", metavar="MODE", default=None,
                    choices=("off", "read", "write", "on"),
                    help="response cache (.evalgate/cache/): off, read, write or on (read and "
                         "write). Default: on for local runs, off in CI (env CI=true)")
    group.addoption("--evalgate-catalog", metavar="PATH", default=None,
                    help="the model catalog this run's snapshots are appended to (one per "
                         "config), or 'off' (default: env EVALGATE_CATALOG, else "
                         ".evalgate/catalog.sqlite3 under the project root)")
    group.addoption("--evalgate-progress-every", metavar="SECONDS", type=float, default=None,
                    help="progress while the calls run: redrawn in place on a terminal; in CI "
                         "(env CI set) or when not a terminal, a line every SECONDS (default: "
                         "env EVALGATE_PROGRESS_EVERY, else 10); 0 turns it off")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from evalgate.plugin import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@pytest.fixture
def evalgate_case(request: pytest.FixtureRequest) -> object:
    """One canary of this run and the candidate's answers to it, for a user's test_*.py to
    assert anything on. Parametrized over the run's canaries (narrow it with the marker
    `@pytest.mark.evalgate_cases(keys=[...], tags=[...], sets=[...])`); the calls are made
    once by the gate (also under xdist), the fixture only reads the run's result."""
    session = request.config.pluginmanager.get_plugin("evalgate-session")
    if session is None:
        pytest.skip("evalgate_case needs `pytest --evalgate`")
    key = getattr(request, "param", None)
    if key is None:
        pytest.skip("no evalgate canary matches this test's evalgate_cases marker")
    return session.case_view(key)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """A new evalgate session in the same process: the previous one's objects are given back
    to the collector."""
    if config.getoption("evalgate"):
        thaw()


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("evalgate"):
        return
    from evalgate.plugin.progress import progress_every
    from evalgate.plugin.session import GateSession

    progress_every(config)  # a bad EVALGATE_PROGRESS_EVERY is a usage error before any call
    config.pluginmanager.register(GateSession.from_config(config), "evalgate-session")
