"""`verbatim eval`: a question set or a BEIR folder, one or more runs, metrics and comparison."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from corpus.loader import default_corpus_dir
from embeddings.encoder import Encoder
from qa.engine import Verbatim
from qa.evaluation import metrics as measures
from qa.evaluation.beir import Qrels, is_beir, load_beir, write_corpus
from qa.evaluation.calibrate import calibrate
from qa.evaluation.docqa import DocQASlice, is_docqa, load_docqa
from qa.evaluation.questions import load_questions
from qa.evaluation.runner import QueryResult, RunConfig, run_questions
from qa.retriever import MODES
from qa.settings import Settings

# Settings that change an index's vectors; runs differing only in others share one index
# (a different Japanese analyser re-tokenises for BM25 but re-encodes nothing).
INDEX_SETTINGS = frozenset(
    {
        "model",
        "encoder_backend",
        "query_prompt",
        "passage_prompt",
        "chunk_size",
        "chunk_overlap",
        "max_file_mb",
    }
)
COMPARED_METRICS = ["ndcg@10", "mrr@10", "recall@10"]


@dataclass
class RunResult:
    config: RunConfig
    results: list[QueryResult]
    metrics: dict[str, Any]


@dataclass
class Evaluation:
    source: str
    runs: list[RunResult]
    comparison: dict[str, Any] | None = None
    comparison_table: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Progress:
    start: Callable[[str, int], None]
    advance: Callable[[], None]


def evaluate(
    source: Path,
    runs: Sequence[RunConfig],
    settings: Settings,
    corpus: Sequence[Path] | None = None,
    limit: int = 0,
    progress: Progress | None = None,
    encoder: Encoder | None = None,
    calibrate_for: float | None = None,
    lang: str | None = None,
    docqa: DocQASlice | None = None,
) -> Evaluation:
    """Run every configuration over the set and measure it. BEIR folders and extractive QA
    sets (`qa.evaluation.docqa`, cut as `docqa` says) get their own index.

    With `calibrate_for` (a false-abstention rate), each run also gets the answer threshold
    that keeps false abstentions within it (`calibrated_*` metrics).
    """
    graded: Qrels | None = None
    if is_beir(source):
        questions, graded = load_beir(source)
        docs = settings.home / "eval" / "beir" / source.name / "docs"
        write_corpus(source, docs)
        corpus_paths = [docs]
        with_quotes = False  # BEIR judges documents; there are no answer strings to quote
    elif is_docqa(source):
        cut = docqa or DocQASlice()
        name = source.name.split(".")[0]
        slice_name = f"{name}-{cut.part}-{cut.skip}-{cut.articles}"
        docs = settings.home / "eval" / "docqa" / slice_name / "docs"
        questions, corpus_paths = load_docqa(source, docs, cut)
        with_quotes = True
    else:
        questions = load_questions(source)
        corpus_paths = list(corpus) if corpus else [default_corpus_dir()]
        with_quotes = True
    if lang:
        questions = [q for q in questions if q.lang == lang]
    if limit:
        questions = questions[:limit]
    encoders: dict[str, Encoder] = {}
    if encoder is not None:
        encoders[encoder.model_id] = encoder
    evaluation = Evaluation(source=str(source), runs=[])
    for config in runs:
        if config.mode is not None and config.mode not in MODES:
            raise ValueError(f"unknown mode {config.mode!r}; available: {', '.join(MODES)}")
        home = run_home(settings.home, source, corpus_paths, config)
        mode = {"mode": config.mode} if config.mode else {}
        run_settings = Settings(
            **{
                **settings.model_dump(),
                **config.overrides,
                **mode,
                "home": home,
                "index_dir": None,
                "models_dir": settings.resolved_models_dir,  # one copy of each model for all runs
            }
        )
        run_encoder = encoders.get(Encoder(run_settings.encoder).model_id) or Encoder(
            run_settings.encoder
        )
        encoders[run_encoder.model_id] = run_encoder
        engine = Verbatim(run_settings, run_encoder)
        engine.build_index(corpus_paths)
        if progress is not None:
            progress.start(config.name, len(questions))
        results = run_questions(
            engine, questions, with_quotes, progress.advance if progress else None
        )
        metrics = measures.compute(results, graded)
        calibration = calibrate(results, calibrate_for) if calibrate_for is not None else None
        if calibration is not None:
            metrics.update({f"calibrated_{k}": v for k, v in calibration.to_dict().items()})
        resolved = replace(config, mode=run_settings.mode)
        evaluation.runs.append(RunResult(resolved, results, metrics))
    if len(evaluation.runs) > 1:
        evaluation.comparison, evaluation.comparison_table = _compare(evaluation.runs, graded)
    return evaluation


def run_home(home: Path, source: Path, corpus: list[Path], config: RunConfig) -> Path:
    """One index per (corpus, index settings) so runs never rebuild each other's index."""
    index_overrides = {k: v for k, v in config.overrides.items() if k in INDEX_SETTINGS}
    key = json.dumps(
        [str(p.resolve()) for p in corpus] + [sorted(index_overrides.items())], default=str
    )
    return home / "eval" / "runs" / f"{source.stem}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def _compare(runs: list[RunResult], graded: Qrels | None) -> tuple[dict[str, Any] | None, str]:
    """ranx's comparison with a paired Student's t-test between every pair of runs."""
    from ranx import Qrels as RanxQrels
    from ranx import Run, compare

    qrels = measures.qrels_of(runs[0].results, graded)
    if not qrels:
        return None, ""
    ranx_runs = []
    for run in runs:
        ranx_run = Run(measures.run_of(run.results, qrels), name=run.config.name)
        ranx_runs.append(ranx_run)
    report = compare(
        RanxQrels(qrels), runs=ranx_runs, metrics=COMPARED_METRICS, stat_test="student", max_p=0.05
    )
    return report.to_dict(), str(report)


def parse_run(text: str) -> RunConfig:
    """`name` or `name:key=value,key=value` (keys are settings, e.g. `chunk_size=4000`)."""
    name, _, options = text.partition(":")
    overrides: dict[str, Any] = {}
    mode = None
    for option in filter(None, (o.strip() for o in options.split(","))):
        key, equals, value = option.partition("=")
        if not equals:
            raise ValueError(f"run option {option!r} must be key=value")
        if key.strip() == "mode":
            mode = value.strip()
        else:
            overrides[key.strip()] = value.strip()
    if not name.strip():
        raise ValueError(f"run {text!r} needs a name")
    unknown = set(overrides) - set(Settings.model_fields)
    if unknown:
        raise ValueError(f"unknown setting(s) in run {name!r}: {', '.join(sorted(unknown))}")
    return RunConfig(name=name.strip(), overrides=overrides, mode=mode)


def parse_floor(text: str) -> tuple[str, float]:
    metric, _, value = text.partition("=")
    try:
        return metric.strip(), float(value)
    except ValueError:
        raise ValueError(f"--min expects metric=value, e.g. ndcg@10=0.6, not {text!r}") from None


def failed_floors(evaluation: Evaluation, floors: list[tuple[str, float]]) -> list[str]:
    """One line per run and metric below its floor (or not measured at all)."""
    failures = []
    for run in evaluation.runs:
        for metric, floor in floors:
            value = run.metrics.get(metric)
            if value is None:
                failures.append(f"{run.config.name}: {metric} was not measured on this set")
            elif value < floor:
                failures.append(
                    f"{run.config.name}: {metric} = {value:.4f} is below the floor {floor}"
                )
    return failures
