"""`turnforge` command line. Nothing imports this module (docs/design.md#layout)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from . import __version__, runner, shards
from .config import ConfigError, parse_set, settings_help
from .stages.base import StageFailed


def _cmd_build(a) -> int:
    overrides: dict = {}
    for k, v in parse_set(a.set).items():  # --set extract.tail_turns=8
        stage, _, key = k.partition(".")
        if not key:
            raise ConfigError(f"--set {k}: use STAGE.key=value with build")
        overrides.setdefault(stage, {})[key] = v
    m = runner.build(a.config, a.out, workers=a.workers, progress=not a.quiet, overrides=overrides,
                     engine=a.engine, ray_address=a.ray_address)
    print(f"shards: {os.path.join(a.out, m['last_stage'], 'data')}")
    if "mix" in m:
        print(f"mixed ({m['mix']['strategy']}): {os.path.join(a.out, 'final')}")
    print(f"manifest: {os.path.join(a.out, 'manifest.json')}")
    print(f"report: {os.path.join(a.out, 'report.html')}")
    return 0


def _cmd_report(a) -> int:
    from .report import write_report

    print(f"report: {write_report(a.dir, a.out)}")
    return 0


def _cmd_stage(a) -> int:
    params = parse_set(a.set)
    seed = int(params.pop("seed", 0))
    m = runner.run_stage(a.name, params, a.inp, a.out, workers=a.workers, seed=seed, progress=not a.quiet,
                         engine=a.engine or "local", ray_address=a.ray_address)
    c = m["counts"]
    print(f"{a.name}: in={c['in']} kept={c['kept']} rejected={c['rejected_total']} "
          f"records_out={c['records_out']} -> {a.out}")
    return 0


def _cmd_mix(a) -> int:
    from .stages.mix import run_mix

    params = parse_set(a.set)
    params["strategy"] = a.strategy
    if a.k:
        params["k"] = a.k
    m = run_mix(a.inp, a.out, params, progress=not a.quiet)
    for name, n in m["validation"]["realised"].items():
        print(f"validation/{name:<20} {n:>9}")
    for st in m["stages"]:
        shares = "  ".join(f"{d}={v['share']:.4f}" for d, v in st["domains"].items())
        print(f"{st['stage']:<31} {st['total']:>9}  {shares}")
    print(f"manifest: {os.path.join(a.out, 'final', 'mix_manifest.json')}")
    return 0


def _cmd_validate(a) -> int:
    from .validate import validate_path

    bad = validate_path(a.path, parse_set(a.set), out=sys.stdout, limit=a.limit, deep=a.deep)
    return 1 if bad else 0


def _cmd_inspect(a) -> int:
    from .validate import inspect_folder

    inspect_folder(a.dir, n=a.n, rejected=a.rejected, out=sys.stdout)
    return 0


def _cmd_export(a) -> int:
    from .io.writers import add_dataset_info, dataset_info_entry, write_jsonl

    folder = shards.shard_folder(a.dir)  # before the output file is made: a typo writes nothing
    if a.format == "parquet":
        from .card import export_parquet

        n, files = export_parquet(folder, a.out)
        print(f"{n} records -> {a.out} (parquet, zstd, {len(files)} file(s))")
        return 0
    fmt, path = a.format, a.out
    if fmt == "llamafactory":  # a ready dataset_dir: OUT/NAME.jsonl (sharegpt) + OUT/dataset_info.json
        os.makedirs(a.out, exist_ok=True)
        fmt, path = "sharegpt", os.path.join(a.out, os.path.basename(os.path.abspath(a.out)) + ".jsonl")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        n = write_jsonl(shards.iter_records(folder), fmt, f)
    base = os.path.basename(path)
    info = add_dataset_info(os.path.dirname(os.path.abspath(path)), base.rsplit(".jsonl", 1)[0],
                            dataset_info_entry(fmt, base))
    print(f"{n} records -> {path} ({fmt}); LLaMA-Factory entry -> {info} (docs/output.md)")
    return 0


def _train_config(a):
    import dataclasses

    import yaml

    from trainer.train import TrainConfig

    values = {}
    if a.config:
        with open(a.config, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
    values.update(parse_set(a.set))
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"train: unknown setting(s) {unknown}; known: {sorted(names)}")
    return TrainConfig(**values)


def _cmd_train(a) -> int:
    from trainer.train import grid, train

    cfg = _train_config(a)
    if a.grid:
        res = grid(cfg, progress=not a.quiet)
        for k, best in res.items():
            print(f"{k:<12} " + "  ".join(f"{d}={v['loss']:.4f}@{v['step']}" for d, v in best.items()))
        return 0
    r = train(cfg, progress=not a.quiet)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"step {r['step']} loss {r['loss']}" + (f" -> {r['final']}" if "final" in r else
                                                      f" (stopped after {r['stopped_after']} steps; rerun to resume)"))
    return 0


def _cmd_pack(a) -> int:
    from trainer.pack import PackConfig, pack_folder

    vals = parse_set(a.set)
    import dataclasses

    names = {f.name for f in dataclasses.fields(PackConfig)}
    unknown = sorted(set(vals) - names)
    if unknown:
        raise ConfigError(f"pack: unknown setting(s) {unknown}; known: {sorted(names - {'extra'})}")
    m = pack_folder(a.inp, a.out, PackConfig(**vals))
    print(f"pack: {m['docs_packed']}/{m['docs_in']} conversations -> {m['rows']} rows of <= {m['settings']['max_len']} "
          f"tokens, packing efficiency {m['packing_efficiency']:.4f}, rejected {m['rejected']} -> {a.out}")
    return 0


def _cmd_admit(a) -> int:
    from .flywheel import admit, print_decision

    d = admit(a.config, a.batch, a.pool, name=a.name, sets=parse_set(a.set), source=a.source, domain=a.domain,
              workers=a.workers, progress=not a.quiet, engine=a.engine, ray_address=a.ray_address)
    print_decision(d, sys.stdout)
    return 0 if d["admitted"] else 1


def _cmd_pool(a) -> int:
    from .flywheel import print_pool

    print_pool(a.dir, sys.stdout)
    return 0


def _cmd_round(a) -> int:
    from .rounds import print_decision, rollback, run_round

    if a.rollback:
        r = rollback(a.rollback)
        print(f"models/current -> models/{r['current']} (was {('models/' + r['from']) if r['from'] else 'base'})")
        return 0
    missing = [o for o, v in (("--pool", a.pool), ("--config", a.config), ("--train", a.train), ("--batch", a.batch))
               if not v]
    if missing:
        raise ConfigError(f"round: {', '.join(missing)} required (or --rollback POOL)")
    d = run_round(a.pool, a.config, a.train, a.batch, name=a.name, sets=parse_set(a.set), since=a.since,
                  source=a.source, domain=a.domain, workers=a.workers, progress=not a.quiet, engine=a.engine,
                  ray_address=a.ray_address, log=sys.stderr)
    print_decision(d, sys.stdout)
    if d.get("id"):
        print(f"decision: {os.path.join(a.pool, 'rounds', d['id'], 'decision.json')}")
    return 0 if d["promoted"] else 1


def _cmd_rounds(a) -> int:
    from .rounds import list_rounds

    list_rounds(a.dir, sys.stdout)
    return 0


def _cmd_scan(a) -> int:
    from .scan import scan_folder

    n = scan_folder(a.dir, sys.stdout, limit=a.limit)
    return 1 if n else 0


def _cmd_pii(a) -> int:
    from . import scan

    if a.pii_cmd == "detect":
        n = scan.detect_file(a.inp, a.out, a.lang)
        print(f"{n} texts -> {a.out}")
        return 0
    res = scan.evaluate(a.data)
    if a.json:
        print(json.dumps(res, indent=1))
    else:
        scan.print_eval(res, sys.stdout)
    return 0


def _cmd_judge(a) -> int:
    from .judge import print_summary, run_judge

    s = run_judge(a.inp, a.out, parse_set(a.set))
    print_summary(s, sys.stdout)
    print(f"scores: {a.out}; summary: {os.path.join(a.out, 'summary.json')}")
    return 0


def _cmd_discriminator(a) -> int:
    if a.disc_cmd == "label":  # an LLM's labels: 0 all labelled, 1 some left unlabelled (docs/cli.md)
        from .labeling import out_paths, print_summary, run_label

        s = run_label(a.inp, a.out, parse_set(a.set))
        print_summary(s, sys.stdout)
        print(f"labelled: {a.out}; summary: {out_paths(a.out)[1]}")
        return 1 if s["unlabelled"] else 0
    from discriminators.topic_continuity import tools

    if a.disc_cmd == "train":
        kinds = tuple(a.kinds.split(","))
        m = tools.train(a.data, a.out, splice=a.splice, splice_n=a.splice_n, kinds=kinds, folds=a.folds,
                        seed=a.seed, embedder=a.embedder, cache_dir=a.cache, negatives_n=a.negatives_n,
                        cue_rate=a.cue_rate)
        i = m.info
        print(f"{m.kind}: out-of-fold F1 {i['oof_f1']:.4f} (P {i['oof_precision']:.4f} R {i['oof_recall']:.4f}) "
              f"ROC-AUC {i['oof_roc_auc']:.4f} on {i['rows']} messages; threshold {m.threshold:.4f} -> {a.out}")
        for name, pr in m.profiles.items():
            print(f"  profile {name}: head {pr['head']}, threshold {pr['threshold']:.4f}, out-of-fold F1 "
                  f"{pr['oof_f1']:.4f} on {pr['rows']} messages")
    elif a.disc_cmd == "adapt":
        m = tools.adapt(a.data, a.out, base=a.base, profile=a.profile, folds=a.folds, seed=a.seed, cache_dir=a.cache)
        pr = m.profiles["adapted"]
        print(f"adapted from profile {pr['from_profile'] or '-'} (head {pr['from_head']}): out-of-fold F1 "
              f"{pr['oof_f1']:.4f} ROC-AUC {pr['oof_roc_auc'] or float('nan'):.4f} on {pr['rows']} messages; "
              f"threshold {pr['threshold']:.4f} -> {a.out}")
    elif a.disc_cmd == "eval":
        res = tools.evaluate(a.model, a.data, a.format, cache_dir=a.cache, profile=a.profile)
        print(json.dumps(res, indent=1) if a.json else "", end="\n" if a.json else "")
        if not a.json:
            tools.print_eval(res, sys.stdout)
    else:
        n = tools.predict(a.model, a.inp, a.out, cache_dir=a.cache, profile=a.profile)
        print(f"{n} conversations -> {a.out}")
    return 0


def _engine_args(p) -> None:
    p.add_argument("--workers", type=int, default=1, help="parallel tasks (local processes, or Ray CPUs of a local Ray)")
    p.add_argument("--engine", choices=["local", "ray"], default=None,
                   help="local process pool (default) or Ray; a build config may say `engine: ray` (docs/cluster.md)")
    p.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                   help="join this Ray cluster (default: start a local Ray); the output must be on a filesystem "
                        "every node sees")


def _sets(p, what: str, metavar: str = "KEY=VALUE") -> None:
    p.add_argument("--set", action="append", default=[], metavar=metavar,
                   help=f"{what}; repeatable; values read as YAML (3, 0.5, true, [a, b])")


def _quiet(p) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars")


class _HelpWithSettings(argparse.Action):
    """-h / --help: the usual help, then the settings a stage's config dataclass holds, with
    their defaults. The stage is imported only here, so its heavy dependencies load only for
    its own help."""

    def __init__(self, option_strings, dest, config=None, **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)
        self.config = config

    def __call__(self, parser, namespace, values, option_string=None):
        parser.print_help()
        name, cls = self.config(namespace)
        if cls is not None:
            print("\n" + settings_help(cls, name))
        parser.exit()


def _stage_config(ns) -> tuple:
    name = getattr(ns, "name", None)
    return (name, runner.get_stage(name).Config) if name else (None, None)


def _mix_config(ns) -> tuple:
    from .stages.mix import MixConfig

    return "mix", MixConfig


def _with_settings_help(sub, name: str, config, **kw):
    p = sub.add_parser(name, add_help=False, **kw)
    p.add_argument("-h", "--help", action=_HelpWithSettings, config=config,
                   help="show this help and the stage's settings with their defaults, and exit")
    return p


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="turnforge", description="Build multi-turn SFT shards and train on them.",
                                epilog="Every command and option: docs/cli.md")
    p.add_argument("--version", action="version", version=f"turnforge {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, help="COMMAND --help describes each")
    _building_commands(sub)
    _data_commands(sub)
    _training_commands(sub)
    _flywheel_commands(sub)
    _pii_commands(sub)
    _judge_command(sub)
    _discriminator_commands(sub)
    return p


def _building_commands(sub) -> None:
    stages = ", ".join(sorted(runner.STAGES))
    b = sub.add_parser("build", help="run the stages of a YAML config into OUT/stages/NN-name/",
                       epilog=f"Stages: {stages}, then mix. `turnforge stage NAME --help` lists a stage's "
                              "settings with their defaults; config keys: docs/cli.md and docs/stages/.")
    b.add_argument("config", help="build config (YAML): inputs, stages, mix, engine, seed")
    b.add_argument("--out", required=True, help="build folder: OUT/stages/NN-name/, OUT/final/, OUT/manifest.json; "
                                                "a rerun resumes an interrupted build")
    _engine_args(b)
    _sets(b, "override a stage setting, e.g. extract.tail_turns=8 or mix.k=1/8", "STAGE.KEY=VALUE")
    _quiet(b)
    b.set_defaults(fn=_cmd_build)

    s = _with_settings_help(sub, "stage", _stage_config, help="run one stage alone",
                            epilog="`turnforge stage NAME --help` lists NAME's settings with their defaults.")
    s.add_argument("name", choices=sorted(runner.STAGES), help=f"the stage: {stages}")
    s.add_argument("--in", dest="inp", required=True, help="input file/dir/glob (extract) or shard folder")
    s.add_argument("--out", required=True, help="the stage folder to write (data/, rejected/, manifest.json, "
                                                "_SUCCESS); a rerun resumes it")
    _engine_args(s)
    _sets(s, "a stage setting (listed by --help), or seed=N")
    _quiet(s)
    s.set_defaults(fn=_cmd_stage)

    mx = _with_settings_help(sub, "mix", _mix_config,
                             help="per-task validation + mixture of shard folders into OUT/final/stage-K")
    mx.add_argument("--in", dest="inp", nargs="+", required=True, metavar="[DOMAIN=]DIR",
                    help="shard folders; DOMAIN= overrides their records' domain")
    mx.add_argument("--strategy", default="multi_task", choices=["multi_task", "sequential", "mixed_sequential", "dmt"],
                    help="SFT strategy (docs/design.md#sft-strategies; default multi_task)")
    mx.add_argument("--k", help="DMT ratios, e.g. 1,1/2,1/4,1/8 (default 1 ... 1/32)")
    mx.add_argument("--out", required=True, help="writes OUT/final/")
    _sets(mx, "a mix setting (listed by --help): alpha, weights, tiers, total, epochs, val_size, ...")
    _quiet(mx)
    mx.set_defaults(fn=_cmd_mix)


def _data_commands(sub) -> None:
    v = sub.add_parser("validate", help="report every bad record of an input file/dir or shard folder")
    v.add_argument("path", help="input file, folder or glob, or a shard folder")
    _sets(v, "an extract setting (format, fields, role_map, ...)")
    v.add_argument("--limit", type=int, default=0, help="print at most N problems (0: all)")
    v.add_argument("--deep", action="store_true",
                   help="a shard folder: also compare every part's hash with its manifest (docs/integrity.md)")
    v.set_defaults(fn=_cmd_validate)

    i = sub.add_parser("inspect", help="counts and a few records of a shard folder or build")
    i.add_argument("dir", help="a shard folder (OUT/stages/NN-name) or a build folder (OUT)")
    i.add_argument("-n", type=int, default=3, help="records to show (default 3)")
    i.add_argument("--rejected", action="store_true", help="show rejected records instead")
    i.set_defaults(fn=_cmd_inspect)

    r = sub.add_parser("report", help="write a build's report.html (funnel, lengths, mixture, topic, PII; no text)")
    r.add_argument("dir", metavar="OUT", help="a build folder (with manifest.json)")
    r.add_argument("--out", metavar="FILE", help="default: OUT/report.html")
    r.set_defaults(fn=_cmd_report)

    e = sub.add_parser("export", help="write a shard folder as openai / sharegpt / alpaca JSONL (with a "
                                      "LLaMA-Factory dataset_info.json entry) or Parquet")
    e.add_argument("dir", help="a shard folder, or a build folder (its last stage)")
    e.add_argument("--format", choices=["openai", "sharegpt", "alpaca", "llamafactory", "parquet"], default="openai",
                   help="output format (default openai); llamafactory: a folder with NAME.jsonl (sharegpt) and "
                        "dataset_info.json; parquet: zstd (docs/output.md)")
    e.add_argument("--out", required=True, help="the JSONL file to write (its folder gets dataset_info.json); "
                                                "llamafactory: a folder; parquet: FILE.parquet or a folder of parts")
    e.set_defaults(fn=_cmd_export)


def _training_commands(sub) -> None:
    k = sub.add_parser("pack", help="tokenise a shard folder and pack it to max_len rows")
    k.add_argument("--in", dest="inp", required=True, help="a shard folder")
    k.add_argument("--out", required=True, help="the packed shard folder to write")
    _sets(k, "model, template, max_len, window")
    k.set_defaults(fn=_cmd_pack)

    t = sub.add_parser("train", help="train on shards (under torchrun: data parallel)")
    t.add_argument("config", nargs="?", help="training config (YAML); --set adds to or overrides it")
    _sets(t, "a trainer setting (docs/trainer.md), e.g. data=OUT/final or max_steps=50")
    t.add_argument("--grid", action="store_true", help="DMT: train stage-1, then every stage-2/k=* from it")
    t.add_argument("--quiet", action="store_true", help="no progress bar (it is drawn only on a terminal anyway)")
    t.set_defaults(fn=_cmd_train)


def _flywheel_commands(sub) -> None:
    ad = sub.add_parser("admit", help="build a new log batch, check it, admit it to a pool or quarantine it")
    ad.add_argument("--config", required=True, help="build config; its inputs are replaced, its mix skipped")
    ad.add_argument("--batch", required=True, nargs="+", help="new log file(s) / folder(s) / glob(s)")
    ad.add_argument("--pool", required=True, metavar="POOL_DIR", help="the training pool (made when missing)")
    ad.add_argument("--name", help="batch name (default: the batch file's name); must be new to the pool")
    ad.add_argument("--source", help="source of batch inputs the config does not list (default: flywheel)")
    ad.add_argument("--domain", help="domain of batch inputs the config does not list (default: general)")
    _sets(ad, "limits (red_lines.max_residual_pii=0, max_pool_overlap=0.5, ...) or STAGE.key=value")
    _engine_args(ad)
    _quiet(ad)
    ad.set_defaults(fn=_cmd_admit)

    po = sub.add_parser("pool", help="admitted batches of a pool and their totals")
    po.add_argument("dir", metavar="POOL_DIR", help="the training pool")
    po.set_defaults(fn=_cmd_pool)

    ro = sub.add_parser("round", help="admit a batch, train on from the current model, evaluate, promote or refuse",
                        epilog="Exit 0 promoted, 1 refused (data or eval gate) or nothing new, 2 error. "
                               "docs/flywheel.md#rounds")
    ro.add_argument("--pool", metavar="POOL_DIR", help="the training pool (made when missing)")
    ro.add_argument("--config", help="build config: stages for admit, `mix:` for the round's mix, `round:` settings")
    ro.add_argument("--train", help="training config (YAML); its model is the base until a round is promoted")
    ro.add_argument("--batch", nargs="+", help="new log file(s) / folder(s) / glob(s)")
    ro.add_argument("--name", help="round and batch name (default: the UTC time, 20261201T020000Z)")
    ro.add_argument("--since", metavar="cursor|TIME", help="only log files changed after the pool's cursor for "
                                                           "each --batch source (`cursor`) or after TIME")
    ro.add_argument("--source", help="source of batch inputs the config does not list (default: flywheel)")
    ro.add_argument("--domain", help="domain of batch inputs the config does not list (default: general)")
    ro.add_argument("--rollback", metavar="POOL_DIR", help="switch models/current back to the previous promoted model")
    _sets(ro, "train.lr=1e-4, eval.max_regression=0.05, round.replay=0.2, or admit's limits and STAGE.key=value")
    _engine_args(ro)
    _quiet(ro)
    ro.set_defaults(fn=_cmd_round)

    rs = sub.add_parser("rounds", help="a pool's rounds, their verdicts and the current model")
    rs.add_argument("dir", metavar="POOL_DIR", help="the training pool")
    rs.set_defaults(fn=_cmd_rounds)


def _pii_commands(sub) -> None:
    sc = sub.add_parser("scan", help="audit a shard folder, build or raw input files for PII; exit 1 when any is found")
    sc.add_argument("dir", help="a shard folder, a build folder (its last stage), or input file(s): a file, folder "
                                "or glob")
    sc.add_argument("--limit", type=int, default=20, help="findings to list (entity, record, offsets; never values)")
    sc.set_defaults(fn=_cmd_scan)

    pi = sub.add_parser("pii", help="PII detection as a tool")
    psub = pi.add_subparsers(dest="pii_cmd", required=True, help="detect or eval")
    d = psub.add_parser("detect", help="add pii: [{entity_type, start, end, score}] to each line with `text`")
    d.add_argument("--in", dest="inp", required=True, help="JSONL (or a JSON array) of objects with `text`")
    d.add_argument("--out", required=True, help="the JSONL file to write")
    d.add_argument("--lang", default="auto", help="zh, en or auto (detected per text; default)")
    d.set_defaults(fn=_cmd_pii)
    ev = psub.add_parser("eval", help="per-entity precision/recall/F1 against gold `spans`")
    ev.add_argument("--data", required=True, help="JSONL of {text, spans: [{entity_type, start_position, "
                                                  "end_position}]}")
    ev.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ev.set_defaults(fn=_cmd_pii)


def _judge_command(sub) -> None:
    jd = sub.add_parser("judge", help="per-dimension SFT evaluation with an LLM judge, bias-mitigated")
    jd.add_argument("--in", dest="inp", required=True, help="JSONL or shard folder; last assistant message = answer")
    jd.add_argument("--out", required=True, help="writes scores.jsonl, pairwise.jsonl, summary.json")
    _sets(jd, "base_url, model (required), mode, dimensions, repeats, swap, weights, max_requests, ...")
    jd.set_defaults(fn=_cmd_judge)


PROFILE_CHOICES = ("assistant", "chitchat", "task", "adapted")


def _discriminator_commands(sub) -> None:
    dc = sub.add_parser("discriminator", help="topic-continuity discriminator: train, adapt, eval, predict, label")
    dsub = dc.add_subparsers(dest="disc_cmd", required=True, help="train, adapt, eval, predict or label")
    fmts = "jsonl|tiage|dialseg|woz|chats"
    dt = dsub.add_parser("train", help="fit, calibrate and save a model (model.json + weights.npz)")
    dt.add_argument("--data", action="append", default=[], metavar="[FORMAT:]PATH", help=f"labelled data; FORMAT {fmts}")
    dt.add_argument("--splice", action="append", default=[], metavar="PATH",
                    help="real chats (openai/sharegpt/alpaca JSON or JSONL) to splice into pseudo multi-turn")
    dt.add_argument("--splice-n", type=int, default=0, help="spliced dialogues to make from each --splice file")
    dt.add_argument("--negatives-n", type=int, default=0,
                    help="real chats of each --splice file added whole as continuations (negatives)")
    dt.add_argument("--kinds", default="logreg,mlp", help="model kinds to compare out-of-fold")
    dt.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    dt.add_argument("--seed", type=int, default=0, help="seed of folds, splices and model initialisation")
    dt.add_argument("--embedder", default="use-m3+minilm",
                    help="sentence embedder; A+B also reads English messages with B (default use-m3+minilm, docs/stages/topic.md)")
    dt.add_argument("--cue-rate", type=float, default=0.25,
                    help="share of spliced / real chat user messages given a soft cue (对了, by the way), "
                         "switches and continuations alike, so a cue alone decides nothing (default 0.25)")
    dt.add_argument("--out", required=True, metavar="MODEL_DIR", help="the model folder to write")
    da = dsub.add_parser("adapt", help="refit a model's head and threshold on a few hundred of your own "
                                       "labelled dialogues (docs/stages/topic.md#adaptation)")
    da.add_argument("--data", action="append", required=True, metavar="[FORMAT:]PATH",
                    help=f"labelled data, as for train; FORMAT {fmts}")
    da.add_argument("--base", default=None, metavar="MODEL_DIR", help="the model to start from (default: shipped)")
    da.add_argument("--profile", default=None, choices=PROFILE_CHOICES,
                    help="the base profile whose head is refit (default: the base's default)")
    da.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    da.add_argument("--seed", type=int, default=0, help="seed of the folds")
    da.add_argument("--out", required=True, metavar="MODEL_DIR", help="the model folder to write")
    de = dsub.add_parser("eval", help="switch P/R/F1, ROC-AUC, Pk, WindowDiff on labelled data")
    de.add_argument("--data", required=True, help="labelled data file")
    de.add_argument("--format", choices=fmts.split("|"), help="guessed from the file name when absent")
    de.add_argument("--json", action="store_true", help="print JSON instead of a table")
    dp = dsub.add_parser("predict", help="write topic_continuity / topic_switch on every message after the first")
    dp.add_argument("--in", dest="inp", required=True, help="chats: JSONL of {messages: [{role, content}]}")
    dp.add_argument("--out", required=True, help="the JSONL file to write")
    dl = dsub.add_parser("label", help="ask an OpenAI-compatible model whether each user message continues the "
                                       "topic; writes the labelled JSONL `train` reads; exit 1 when some stay unlabelled")
    dl.add_argument("--in", dest="inp", required=True,
                    help="chats (file/folder/glob as extract reads them), a shard folder, or FORMAT:PATH with "
                         "FORMAT jsonl|tiage|dialseg|woz to compare with its gold labels")
    dl.add_argument("--out", required=True, help="the JSONL file to write (+ .rejected.jsonl, .summary.json)")
    _sets(dl, "base_url, model (required), roles, max_requests, concurrency, cache_dir, extract.KEY, ...")
    dl.set_defaults(fn=_cmd_discriminator)
    for x in (dt, da, de, dp):
        x.add_argument("--cache", help="embedding cache folder (default: $TURNFORGE_EMBED_CACHE, else none)")
        x.set_defaults(fn=_cmd_discriminator)
    for x in (de, dp):
        x.add_argument("--model", default=None, metavar="MODEL_DIR", help="default: the shipped model")
        x.add_argument("--profile", default=None, metavar="PROFILE",
                       help="operating point: assistant (the default: user-initiated switches, few false "
                            "ones), chitchat (drift), task (domain switches), or adapted after `adapt`")


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    try:
        return a.fn(a)
    except (ConfigError, OSError, ValueError) as e:
        print(f"turnforge: error: {e}", file=sys.stderr)
        return 2
    except StageFailed as e:
        print(f"turnforge: stage failed: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:  # finished tasks are kept (docs/design.md#a-build-on-disk): say how to go on
        print("turnforge: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
