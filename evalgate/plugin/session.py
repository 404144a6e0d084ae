"""The pytest side of evalgate: collection, the one-time run, items that assert, the summary.

Calls are made once per session, in the controller process, after collection and selection
(`-k`, `-m`, node ids) and before any test runs. Under pytest-xdist the controller makes them
when the first worker reports its collection (scheduling waits for that hook), writes the run
result atomically, and the workers only read it and assert.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from evalgate.errors import ConfigError, Problem
from evalgate.gate.baseline import Baseline, save_to_store
from evalgate.gate.guardrails import plan_guardrails
from evalgate.gate.verdicts import blocks
from evalgate.grading.rubrics import CaseEntry
from evalgate.pipeline.project import Project, load_project
from evalgate.pipeline.window import window_guardrails
from evalgate.plugin.baselines import has_baseline, load_baseline
from evalgate.plugin.freezing import mark_frozen
from evalgate.plugin.nodeids import GATE_NODE, case_key, item_name, record_ids_from_nodeids
from evalgate.report.summary import canary_problem, failure_text, summary_lines
from evalgate.results import RESULT_FILE, Record, RunResult, read_result, write_result


class CanaryFailure(Exception):
    """A canary's answer failed its rubric, or its call failed: shown without a traceback."""


class GateFailure(Exception):
    """A guardrail is violated or undecidable."""


def usage_error(exc: ConfigError) -> pytest.UsageError:
    return pytest.UsageError(f"evalgate: {exc}")


def shard_of(key: str, total: int) -> int:
    """The shard (1..total) a canary belongs to: a hash of its key, so the slice is the same
    on every machine whatever the file order or the -k selection."""
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % total + 1


def with_samples(project: Project, samples: int | None) -> Project:
    """`--evalgate-samples=N`: the project as if its gate config said `samples: N`."""
    if samples is None:
        return project
    if samples < 1:
        raise ConfigError(Problem("--evalgate-samples", f"must be at least 1 (got {samples})"))
    config = project.gate.config.model_copy(update={"samples": samples})
    return dataclasses.replace(project, gate=dataclasses.replace(project.gate, config=config))


class GateSession:
    """Holds the loaded project and the run result for one pytest session."""

    def __init__(self, config: pytest.Config, project: Project,
                 baseline: Baseline | None = None) -> None:
        self.config = config
        self.project = project
        self.samples = project.gate.config.samples
        self.report_dir = project.report_dir(config.getoption("evalgate_report_dir"))
        self.result_path = self.report_dir / RESULT_FILE
        worker = getattr(config, "workerinput", None)
        self.is_worker = worker is not None
        # Ties the result file to this session, so no worker ever asserts on a stale file.
        self.run_id = uuid.uuid4().hex[:12]
        if worker is not None and "evalgate_result" in worker:
            self.result_path = Path(worker["evalgate_result"])
            self.run_id = worker["evalgate_run_id"]
        self.baseline = baseline  # loaded in the controller only: workers make no calls
        self.plan = plan_guardrails(project.gate.config.gate, has_baseline(config, project))
        from evalgate.gate.production import extra_guardrails  # routes, load, determinism

        self.plan += extra_guardrails(project.gate.config, has_baseline(config, project),
                                      config.getoption("evalgate_shard"))
        self.plan += window_guardrails(project.candidate)
        self._result: RunResult | None = None
        self.speculated: set[str] | None = None  # xdist: the calls made before workers collected
        self._records: dict[str, Record] | None = None
        self.saved_to: Path | None = None
        self.catalogued: tuple[str, bool] | None = None  # the summary line, is it a warning
        self.reports: list[Path] = []
        self._reports: Callable[[], list[Path]] | None = None  # being written in a thread
        # xdist: the copy of the result the workers read (a private temporary directory), so
        # the report folder itself only ever changes as one set
        self.worker_result: Path | None = None
        # Resolved once per file, not per canary: realpath() is ~40 us, 2 x 2000 canaries add up.
        resolved: dict[Path, Path] = {}
        self.entries_by_file: dict[Path, list[CaseEntry]] = {}
        for entry in project.entries:
            path = resolved.get(entry.file)
            if path is None:
                path = resolved[entry.file] = entry.file.resolve()
            self.entries_by_file.setdefault(path, []).append(entry)
        self.canary_files = set(self.entries_by_file)

    @classmethod
    def from_config(cls, config: pytest.Config) -> GateSession:
        baseline = None
        try:
            register_custom_checks(config)
            listed = config.getoption("evalgate_candidates")
            candidates = [c.strip() for c in listed.split(",") if c.strip()] if listed else None
            project = with_samples(load_project(config.rootpath,
                                                config.getoption("evalgate_config"),
                                                candidates),
                                   config.getoption("evalgate_samples"))
            if not hasattr(config, "workerinput"):
                # A missing key or an unimportable callable is a usage error, before any call.
                from evalgate.engine.providers import make_provider

                for model in project.configs:
                    make_provider(model, sim_base_url="http://127.0.0.1:0")
                    if model.fallback is not None:
                        make_provider(model.fallback, sim_base_url="http://127.0.0.1:0")
                baseline = load_baseline(config, project)
                if baseline is not None and baseline.model is not None:
                    make_provider(baseline.model, sim_base_url="http://127.0.0.1:0")
                if project.judge is not None:
                    make_provider(project.judge, sim_base_url="http://127.0.0.1:0")
        except ConfigError as exc:
            raise usage_error(exc) from None
        session = cls(config, project, baseline)
        session._aim_collection()
        config.addinivalue_line("markers", "evalgate: an evalgate canary or gate item")
        config.addinivalue_line("markers", "evalgate_cases(keys=None, tags=None, sets=None): "
                                "the canaries an `evalgate_case` test runs on")
        for tag in sorted({t for e in project.entries for t in e.case.tags}):
            if tag.isidentifier():
                config.addinivalue_line("markers", f"{tag}: evalgate canary tag")
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(XdistHooks(session), "evalgate-xdist")
        return session

    def _aim_collection(self) -> None:
        """Collect the canaries: instead of testpaths when no paths are given, else in addition
        to the given paths unless those already point into the canaries (node-id selection)."""
        canary_paths = [str(p) for p in self.project.canary_paths]
        config = self.config
        if config.args_source != pytest.Config.ArgsSource.ARGS:
            config.args[:] = canary_paths
            return
        roots = [Path(p).resolve() for p in canary_paths]
        for arg in config.args:
            path = (config.invocation_params.dir / arg.split("::")[0]).resolve()
            if any(path == r or r in path.parents or path in r.parents for r in roots):
                return
        config.args.extend(canary_paths)

    # -- collection --------------------------------------------------------------------------

    @pytest.hookimpl
    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector) -> Any:
        if file_path.resolve() in self.canary_files:
            return CanaryFile.from_parent(parent, path=file_path, gate=self)
        return None

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(self, collector: pytest.Collector) -> Iterator[Any]:
        report = yield
        if isinstance(collector, pytest.Session) and report.outcome == "passed":
            report.result.append(GateCollector.from_parent(collector, name=GATE_NODE,
                                                           nodeid=GATE_NODE, gate=self))
        return report

    def pytest_collection_modifyitems(self, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        """`--evalgate-shard=I/N`: deselect the canaries of other shards, so they are never
        called (the run calls only the selected items' canaries), and the `evalgate_case` tests
        on them, which would call them too. Gate items and other tests stay."""
        shard = config.getoption("evalgate_shard")
        if shard is None:
            return
        index, total = shard
        keep, drop = [], []
        for item in items:
            key = item.entry.key if isinstance(item, CanaryItem) else case_key(item)
            other = key is not None and shard_of(key, total) != index
            (drop if other else keep).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep

    def pytest_report_header(self, config: pytest.Config) -> str:
        p = self.project
        against = f", baseline {self.baseline.label}" if self.baseline is not None else ""
        shard = config.getoption("evalgate_shard")
        part = f", shard {shard[0]}/{shard[1]}" if shard else ""
        who = (f"candidate {p.candidate.name} ({p.candidate.config.provider})"
               if not p.alternatives else
               f"candidates {', '.join(m.name for m in p.configs)}")
        return (f"evalgate: {p.gate.path.name}, {who}{against}, {len(p.entries)} canaries x "
                f"{self.samples} sample(s){part}")

    # -- the one-time run --------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        if self.is_worker:
            return  # xdist workers only read the controller's result
        if self.config.pluginmanager.hasplugin("dsession"):
            # The controller: calls now, while the workers start and collect, when the
            # selection is known without them; else from XdistHooks once a worker collected.
            selected = self.selection_without_collection()
            if selected is not None:
                self.speculated = set(selected)
                self.execute(selected)
            return
        if self.config.option.collectonly or (
            session.testsfailed and not self.config.option.continue_on_collection_errors
        ):
            return
        selected = [i.record_id for i in session.items if isinstance(i, CanaryItem)]
        selected += self.case_test_record_ids(session.items)
        self.execute(selected)

    # -- the evalgate_case fixture -----------------------------------------------------------

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Parametrize a test using `evalgate_case` over the canaries its marker selects."""
        if "evalgate_case" not in metafunc.fixturenames:
            return
        marker = metafunc.definition.get_closest_marker("evalgate_cases")
        want = marker.kwargs if marker is not None else {}
        keys = [e.key for e in self.project.entries
                if (not want.get("keys") or e.key in want["keys"])
                and (not want.get("tags") or set(want["tags"]) & set(e.case.tags))
                and (not want.get("sets") or e.set_name in want["sets"])]
        unknown = sorted(set(want.get("keys") or []) - {e.key for e in self.project.entries})
        if unknown:
            raise pytest.UsageError(f"evalgate_cases: unknown canary key(s) {unknown}")
        metafunc.parametrize("evalgate_case", keys or [None], indirect=True,
                             ids=keys or ["no-canary"])

    def selection_without_collection(self) -> list[str] | None:
        """Every canary (of this shard) when nothing on the command line narrows the selection:
        no paths or node ids, -k, -m, --deselect, --ignore, --lf or --sw. None otherwise.

        Under xdist the controller never collects; with this it need not wait for a worker's
        collection (a second or more of interpreter start, plugin load and collection) before
        the first call. A conftest.py that deselects canaries is caught when the workers report
        their collection (see XdistHooks).
        """
        config, opt = self.config, self.config.option
        if opt.collectonly or config.args_source == pytest.Config.ArgsSource.ARGS:
            return None
        narrowing = ("keyword", "markexpr", "deselect", "ignore", "ignore_glob", "lf",
                     "stepwise")
        if any(getattr(opt, name, None) for name in narrowing):
            return None
        shard = config.getoption("evalgate_shard")
        return [f"{e.key}#{k}" for e in self.project.entries
                if shard is None or shard_of(e.key, shard[1]) == shard[0]
                for k in range(self.samples)]

    def case_test_record_ids(self, items: Iterable[pytest.Item]) -> list[str]:
        """The calls that tests using `evalgate_case` need (every sample of their canary)."""
        out = []
        for item in items:
            key = case_key(item)
            if key is not None:
                out += [f"{key}#{k}" for k in range(self.samples)]
        return out

    def case_view(self, key: str) -> CaseView:
        entry = self.project.entries_by_key()[key]
        records = [self.record(f"{key}#{k}") for k in range(self.samples)]
        found = [r for r in records if r is not None]
        if not found:
            raise CanaryFailure(f"canary {key} was not called in this session")
        return CaseView(key, entry.case, entry, found)

    def execute(self, selected: Iterable[str], warning: str | None = None) -> None:
        """Make the calls for the selected canaries, grade, decide, write the result."""
        if self._reports is not None:  # a first round's reports: finished before any rewrite
            self._reports()
            self._reports = None
        from evalgate.engine.persist import default_cache_mode
        from evalgate.pipeline.run import run_project
        from evalgate.plugin.progress import ProgressPrinter

        try:
            cache = self.config.getoption("evalgate_cache") or default_cache_mode()
        except ValueError as exc:
            raise pytest.UsageError(f"evalgate: {exc}") from None
        shard = self.config.getoption("evalgate_shard")
        progress = ProgressPrinter.for_config(self.config)

        def publish(result: RunResult, done: Callable[[], None]) -> None:
            if progress is not None:  # the calls are over: the last counts before the reports
                progress.close()
            if shard:
                result.shard = f"{shard[0]}/{shard[1]}"
            if warning:
                result.warnings.insert(0, warning)
            self.publish(result, done)

        try:
            result = run_project(self.project, set(selected),
                                 self.config.getoption("evalgate_concurrency"), self.run_id,
                                 self.baseline, cache=cache,
                                 resume=self.config.getoption("evalgate_resume"),
                                 shard=shard, publish=publish, progress=progress)
        except ConfigError as exc:  # e.g. a prompt template that fails on a case
            raise usage_error(exc) from None
        finally:
            if progress is not None:
                progress.close()
        self._set_result(result)
        if result.partial:  # Ctrl-C: reports are written and say partial; pytest stops (exit 2)
            raise KeyboardInterrupt

    def publish(self, result: RunResult, done: Callable[[], None]) -> None:
        """Write the result and the reports as one set, and the autosave; `done()` (the
        journal's removal) only once they are all on disk. Under xdist the workers read a
        copy of the result at once, and the reports are written while they run the items."""
        from evalgate.report import write_all

        if self.config.getoption("evalgate_autosave") and not result.partial:
            self.saved_to = save_to_store(result, self.project.gate)

        def reports() -> list[Path]:
            written = write_all(result, self.report_dir, with_result=True,
                                step_summary=bool(os.environ.get("GITHUB_STEP_SUMMARY")))
            done()
            return written

        if self.worker_result is not None:
            write_result(result, self.worker_result)
        if self.worker_result is not None and not result.partial:
            from evalgate.pipeline.run import in_background

            self._reports = in_background(reports)
        else:
            self.reports = reports()

    def _set_result(self, result: RunResult) -> None:
        self._result = result
        self._records = result.record_map()
        # The project, records and result live until the session ends: out of the collector's
        # reach from now on (see evalgate.plugin.freezing: 0.6 s at 2,000 canaries).
        mark_frozen()

    def result(self) -> RunResult:
        if self._result is None:
            try:
                result = read_result(self.result_path)
            except (OSError, ValueError) as exc:
                raise GateFailure(f"no evalgate result to assert on ({exc})") from None
            if result.run_id != self.run_id:
                raise GateFailure(f"{self.result_path} is from another run ({result.run_id}, "
                                  f"expected {self.run_id}): the calls were not made")
            self._set_result(result)
        assert self._result is not None
        return self._result

    def record(self, record_id: str) -> Record | None:
        self.result()
        assert self._records is not None
        return self._records.get(record_id)

    # -- summary -----------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self) -> None:
        if self._reports is not None:  # xdist: the reports written while the items ran
            self.reports, self._reports = self._reports(), None
        if self.worker_result is not None and not self.is_worker:
            shutil.rmtree(self.worker_result.parent, ignore_errors=True)
        if not self.is_worker and self._result is not None:
            from evalgate.plugin.catalog import record_run

            self.catalogued = record_run(self.config, self.project.gate.root, self._result)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker or self._result is None:
            return
        tr = terminalreporter
        result = self._result
        tr.write_sep("=", f"evalgate gate: {result.verdict}"
                     + (" (PARTIAL run: interrupted)" if result.partial else ""))
        for line in summary_lines(result):
            tr.write_line(line)
        tr.write_line(f"result: {self.result_path}")
        if self.reports:
            tr.write_line("reports: " + ", ".join(str(p) for p in self.reports))
        if self.saved_to is not None:
            tr.write_line(f"saved as {self.saved_to.relative_to(self.project.gate.root)}")
        if self.catalogued is not None:
            tr.write_line(self.catalogued[0], yellow=self.catalogued[1])


@dataclass(frozen=True)
class CaseView:
    """What `evalgate_case` gives a test: the canary and the candidate's graded answers."""

    key: str
    case: Any  # evalgate.spec.canaries.Case
    entry: CaseEntry
    records: list[Record]

    @property
    def record(self) -> Record:
        """The first sample's record."""
        return self.records[0]

    @property
    def text(self) -> str:
        """The first sample's answer ('' when its call failed)."""
        return self.records[0].text or ""

    @property
    def texts(self) -> list[str]:
        return [r.text or "" for r in self.records]


def register_custom_checks(config: pytest.Config) -> None:
    """Checks from installed packages (entry points) and conftest.py hooks, before rubrics
    load."""
    from evalgate.grading.checks import CheckRegistry, load_entry_point_checks

    try:
        load_entry_point_checks()
        config.hook.pytest_evalgate_register_checks(registry=CheckRegistry())
    except ValueError as exc:
        raise ConfigError(Problem("pytest_evalgate_register_checks", str(exc))) from None


class XdistHooks:
    """Hooks that exist only when pytest-xdist is installed."""

    def __init__(self, gate: GateSession) -> None:
        self.gate = gate
        self.done = False

    def pytest_configure_node(self, node: Any) -> None:
        gate = self.gate
        if gate.worker_result is None:
            gate.worker_result = Path(tempfile.mkdtemp(prefix="evalgate-")) / RESULT_FILE
        node.workerinput["evalgate_result"] = str(gate.worker_result)
        node.workerinput["evalgate_run_id"] = self.gate.run_id

    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if self.done:
            return
        self.done = True
        if self.gate.config.option.collectonly:
            return
        gate = self.gate
        selected = record_ids_from_nodeids(
            ids, rootpath=gate.config.rootpath.resolve(), entries_by_file=gate.entries_by_file,
            samples=gate.samples, known_keys=gate.project.entries_by_key())
        made = self.gate.speculated
        if made is None:
            self.gate.execute(selected)
        elif set(selected) != made:  # e.g. a conftest.py deselected canaries: decide again
            self.gate.execute(selected, warning=(
                f"the workers selected {len(set(selected))} of the {len(made)} canary calls "
                "made before their collection (a plugin or conftest.py changed the selection):"
                " the gate was decided again on the selected ones, with their calls made "
                "again; pass the canary paths or -k to avoid the first round"))


class CanaryFile(pytest.File):
    def __init__(self, *, gate: GateSession, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate

    def collect(self) -> Iterable[pytest.Item]:
        samples = self.gate.samples
        for entry in self.gate.entries_by_file.get(self.path.resolve(), []):
            for k in range(samples):
                item = CanaryItem.from_parent(self, name=item_name(entry, k, samples),
                                              entry=entry, sample=k, gate=self.gate)
                item.add_marker(pytest.mark.evalgate)
                for tag in entry.case.tags:
                    item.extra_keyword_matches.add(tag)
                    if tag.isidentifier():
                        item.add_marker(getattr(pytest.mark, tag))
                yield item


class CanaryItem(pytest.Item):
    def __init__(self, *, entry: CaseEntry, sample: int, gate: GateSession,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entry = entry
        self.sample = sample
        self.gate = gate
        self.record_id = f"{entry.key}#{sample}"

    def runtest(self) -> None:
        record = self.gate.record(self.record_id)
        if record is None:
            seq = self.gate.result().sequential
            if seq is not None and seq.stopped_early:  # by design: the gate was decided
                pytest.skip(f"not called: sequential gating stopped after look "
                            f"{seq.looks_done}/{seq.looks_planned} ({seq.reason})")
            raise CanaryFailure(f"{self.record_id} was not executed in this session")
        self.user_properties += [("latency_ms", record.latency_ms),
                                 ("input_tokens", record.input_tokens),
                                 ("output_tokens", record.output_tokens),
                                 ("cost_usd", record.cost_usd)]
        problem = canary_problem(record)
        if problem is None:
            return
        if self.gate.project.gate.config.canary_failures == "report":
            pytest.xfail(problem.splitlines()[0])
        raise CanaryFailure(problem)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, CanaryFailure | GateFailure):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, (self.entry.line - 1) if self.entry.line else None, \
            f"canary {self.record_id}"


class GateCollector(pytest.Collector):
    def __init__(self, *, gate: GateSession, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate

    def collect(self) -> Iterable[pytest.Item]:
        project = self.gate.project
        if not project.alternatives:  # one candidate: the items keep their plain names
            plans = [(None, self.gate.plan)]
        else:  # gate[<candidate>:<guardrail>], one set per candidate
            plans = [(project.candidate.name, self.gate.plan)] + [
                (m.name, plan_guardrails(project.gate.config.gate,
                                         has_baseline(self.config, project)))
                for m in project.alternatives]
        for candidate, plan in plans:
            for guardrail in plan:
                name = guardrail.name if candidate is None else f"{candidate}:{guardrail.name}"
                item = GateItem.from_parent(self, name=f"gate[{name}]",
                                            guardrail=guardrail.name, gate=self.gate,
                                            candidate=candidate)
                item.add_marker(pytest.mark.evalgate)
                yield item


class GateItem(pytest.Item):
    def __init__(self, *, guardrail: str, gate: GateSession, candidate: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.guardrail = guardrail
        self.gate = gate
        self.candidate = candidate  # None: the only candidate

    def runtest(self) -> None:
        from evalgate.gate.verdicts import blocking_candidates

        result = self.gate.result()
        verdicts = result.verdicts
        alt = next((a for a in result.alternatives if a.info.name == self.candidate), None)
        if alt is not None:
            verdicts = alt.verdicts
        verdict = next((v for v in verdicts if v.guardrail == self.guardrail), None)
        if verdict is None:
            raise GateFailure(f"no verdict for {self.guardrail} in {self.gate.result_path}")
        self.user_properties += [("value", verdict.value), ("verdict", verdict.verdict),
                                 ("test", verdict.test), ("p_value", verdict.p_value)]
        if self.candidate is not None and self.candidate not in blocking_candidates(result):
            if verdict.verdict != "PASS":  # an alternative shown for the choice: not blocking
                warnings.warn(f"evalgate {verdict.verdict} (candidate {self.candidate}, not "
                              f"required by gate.require: {result.require}): {verdict.reason}",
                              stacklevel=1)
            return
        if blocks(verdict.verdict, result.on_inconclusive):
            raise GateFailure(failure_text(verdict))
        if verdict.verdict == "INCONCLUSIVE" and result.on_inconclusive == "warn":
            warnings.warn(f"evalgate INCONCLUSIVE: {verdict.reason}", stacklevel=1)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, GateFailure):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        name = self.guardrail if self.candidate is None else f"{self.candidate}:{self.guardrail}"
        return self.gate.project.gate.path, None, f"evalgate gate[{name}]"
