"""`satdask` commands: parse, call the library, print. Errors are one line on stderr."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from satdask.errors import SatdaskError

if TYPE_CHECKING:
    from satdask.models.onnx import OnnxModel

EXIT_ERROR, EXIT_USAGE = 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line instead of argparse's usage block, like every other satdask error."""
        self.exit(EXIT_USAGE, f"satdask: error: {message} (see {self.prog} --help)\n")


def _bands(text: str) -> list[int]:
    try:
        return [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--bands must be like 1,2,3, got {text!r}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


DESCRIPTION = """\
satdask runs ML inference over every tile of large satellite scenes, scaled with Dask.
Scenes (GeoTIFF/COG paths or URLs, STAC items) are read lazily in chunks of whole tiles;
each run writes a georeferenced Zarr store that traces every output to the model's and
the scene's sha256 and the config.

  satdask sample scene.tif                 write a sample scene
  satdask train scene.tif --registry models
  satdask infer scene.tif --model models --out run.zarr
  satdask runs show run.zarr               summarise a run; runs verify re-checks it
"""

# --debug is accepted before or after the command name.
_COMMON = _Parser(add_help=False)
_COMMON.add_argument(
    "--debug", action="store_true", default=argparse.SUPPRESS, help="print tracebacks on errors"
)


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option shows its default; descriptions keep their line breaks."""


def _command(
    subparsers: argparse._SubParsersAction[_Parser], name: str, *, help: str
) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        name, help=help, description=help, parents=[_COMMON], formatter_class=_Help
    )


def _group(
    subparsers: argparse._SubParsersAction[_Parser], name: str, *, help: str
) -> argparse._SubParsersAction[_Parser]:
    """A command of subcommands; alone, it prints its usage instead of an error."""
    parser = _command(subparsers, name, help=help)
    parser.set_defaults(func=None, usage_of=parser)
    return parser.add_subparsers(dest=f"{name}_command", parser_class=_Parser)


def build_parser() -> argparse.ArgumentParser:
    from satdask import __version__

    p = _Parser(prog="satdask", description=DESCRIPTION, parents=[_COMMON], formatter_class=_Help)
    p.add_argument("--version", action="version", version=f"satdask {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = _command(sub, "sample", help="write a deterministic sample COG (no network needed)")
    s.add_argument("out", type=Path, help="the GeoTIFF to write")
    s.add_argument("--size", type=_positive, default=4096, help="rows and cols, in pixels")
    s.add_argument("--bands", type=_positive, default=4, help="number of bands")
    s.add_argument("--dtype", default="uint16", help="pixel type, e.g. uint8, uint16, float32")
    s.add_argument("--seed", type=int, default=0, help="the same seed gives the same bytes")
    s.add_argument("--overwrite", action="store_true", help="replace an existing file")
    s.set_defaults(func=cmd_sample)

    s = _command(sub, "ingest", help="download a scene with a checksum (idempotent)")
    s.add_argument("url", help="http(s):// or file:// URL of the scene")
    s.add_argument("--out", type=Path, required=True, help="where to save it")
    s.add_argument("--sha256", help="expected sha256; a mismatch deletes the download")
    s.set_defaults(func=cmd_ingest)

    s = _command(sub, "validate", help="check scenes, and the tile grid a run would use")
    s.add_argument("scenes", nargs="+", metavar="scene", help="paths, URLs, STAC item JSON")
    s.add_argument("--tile-size", type=_positive, default=256, help="tile side, in pixels")
    s.add_argument("--edge", choices=["skip", "pad"], default="skip", help=_EDGE_HELP)
    s.add_argument(
        "--same-crs", action="store_true", help="fail (not warn) when the scenes' CRS differ"
    )
    s.set_defaults(func=cmd_validate)

    s = _command(sub, "train", help="train a threshold model into a registry")
    s.add_argument("scenes", nargs="+", metavar="scene", help="paths, URLs, STAC item JSON")
    s.add_argument("--registry", type=Path, required=True, help="model registry directory")
    _scene_options(s)
    s.add_argument(
        "--allow-mixed-crs", action="store_true", help="train across scenes of different CRS"
    )
    s.set_defaults(func=cmd_train)

    s = _command(sub, "infer", help="run batch inference into a Zarr run store")
    s.add_argument("scenes", nargs="+", metavar="scene", help="paths, URLs, STAC item JSON")
    s.add_argument("--model", required=True, help="registry DIR[:ID], ID defaults to latest")
    s.add_argument(
        "--out",
        required=True,
        help="the run store (a path or s3://...); for several scenes, a directory",
    )
    _scene_options(s, tile_size=None)
    s.add_argument(
        "--allow-model-mismatch",
        action="store_true",
        help="run a model on bands, a dtype or a tile size unlike those it was trained on",
    )
    s.add_argument(
        "--padding",
        choices=["reflect", "symmetric", "edge", "zeros"],
        default="reflect",
        help="pixel models: what a window sees beyond the scene's edge (the scene mirrored "
        "without or with its edge pixel, the edge pixel repeated, or zeros)",
    )
    s.add_argument(
        "--keep-scores",
        action="store_true",
        help="pixel models: also keep every pixel's class scores (float16) in the store's "
        "pixels group",
    )
    s.add_argument("--overwrite", action="store_true", help="replace an existing run store")
    s.add_argument(
        "--resume", action="store_true", help="reuse the blocks a killed run made durable"
    )
    s.set_defaults(func=cmd_infer)

    runs = _group(sub, "runs", help="inspect run stores")
    s = _command(runs, "show", help="summarise a run store")
    s.add_argument("store", help="a path or s3://...")
    s.add_argument("--json", action="store_true", help="print all run attributes as JSON")
    s.set_defaults(func=cmd_runs_show)
    s = _command(runs, "verify", help="re-read a run store and check it against its lineage")
    s.add_argument("store", help="a path or s3://...")
    s.add_argument("--registry", type=Path, help="model registry (default: the recorded one)")
    s.set_defaults(func=cmd_runs_verify)

    s = _command(
        sub,
        "export",
        help="export a run: json, the tile grid in the reference pipeline's shape; cog, a "
        "pixel model's classes as a Cloud Optimized GeoTIFF with their colours",
    )
    s.add_argument("store", help="a path or s3://...")
    s.add_argument("--format", choices=["json", "cog"], required=True, help="output format")
    s.add_argument("--out", type=Path, help="file to write (default: stdout; cog needs one)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    s.set_defaults(func=cmd_export)

    models = _group(sub, "models", help="inspect a model registry, import models into it")
    s = _command(models, "list", help="list model artifacts")
    s.add_argument("--registry", type=Path, required=True, help="model registry directory")
    s.set_defaults(func=cmd_models_list)
    s = _command(
        models,
        "import",
        help="register an ONNX model checked against its STAC MLM metadata, or the built-in "
        "s2cloudless cloud detector",
    )
    s.add_argument("model", help="the ONNX model file (.onnx), or the word s2cloudless")
    s.add_argument(
        "--metadata", type=Path, help="an ONNX model's STAC MLM metadata: an item or its properties"
    )
    s.add_argument("--registry", type=Path, required=True, help="model registry directory")
    s.add_argument("--threshold", type=float, help="s2cloudless: cloud probability threshold (0.4)")
    s.add_argument(
        "--average-over", type=int, help="s2cloudless: radius of the averaging disk, px (1)"
    )
    s.add_argument("--dilation-size", type=int, help="s2cloudless: radius of the dilation, px (1)")
    s.set_defaults(func=cmd_models_import)

    s = _command(sub, "serve", help="serve single-tile predictions over HTTP")
    s.add_argument(  # text: Path() would turn http://host/ into http:/host
        "--data-root", help="folder, or http(s):// or s3:// prefix, of scenes (SATDASK_DATA_ROOT)"
    )
    s.add_argument("--model", help="registry DIR[:ID] (SATDASK_MODEL)")
    s.add_argument(
        "--runs-root", help="folder of run stores served as map tiles (SATDASK_RUNS_ROOT)"
    )
    s.add_argument("--host", help="bind address (SATDASK_HOST, default 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (SATDASK_PORT, default 8000)")
    s.add_argument("--workers", type=_positive, help="uvicorn worker processes (SATDASK_WORKERS)")
    s.set_defaults(func=cmd_serve)

    s = _command(
        sub,
        "view",
        help="serve a run and its scene on a web map (/map) on a free loopback port; "
        "prints the map's URL and opens nothing",
    )
    s.add_argument("store", help="the run store (a local path)")
    s.add_argument("--host", default="127.0.0.1", help="bind address")
    s.add_argument("--port", type=int, default=0, help="port; 0 takes a free one")
    s.set_defaults(func=cmd_view)

    s = _command(sub, "demo", help="sample, validate, train, infer and show, end to end")
    s.add_argument("--workdir", type=Path, default=Path("satdask-demo"), help="where to work")
    s.add_argument("--size", type=_positive, default=4096, help="sample scene size, in pixels")
    s.set_defaults(func=cmd_demo)
    return p


_EDGE_HELP = (
    "partial tiles at the right and bottom edges: skip leaves them out (as the reference "
    "pipeline does; runs say how many pixels), pad infers them from their valid pixels"
)


def _scene_options(s: argparse.ArgumentParser, *, tile_size: int | None = 256) -> None:
    """`tile_size=None`: no default, the model's (a window classifier's tiles are its windows
    less their halo, 256 px for any other model)."""
    s.add_argument("--scheduler", default="local", help="local, threads or tcp://host:port")
    s.add_argument(
        "--tile-size",
        type=_positive,
        default=tile_size,
        help="tile side, in pixels"
        + ("" if tile_size else " (default: 256, or a window model's windows less the halo)"),
    )
    s.add_argument(
        "--tiles-per-chunk",
        type=_positive,
        help="tiles per chunk side (default: about 24 MiB, aligned to the file's blocks)",
    )
    s.add_argument("--edge", choices=["skip", "pad"], default="skip", help=_EDGE_HELP)
    s.add_argument("--bands", type=_bands, help="bands to read, like 1,2,3 (default: all)")


def cmd_sample(args: argparse.Namespace) -> None:
    import numpy as np

    from satdask.core.grid import size_text
    from satdask.io.sample import write_sample

    shape = size_text(args.size, args.size, args.bands)
    try:
        raw = args.size * args.size * args.bands * np.dtype(args.dtype).itemsize
    except TypeError:
        raise SatdaskError(f"--dtype {args.dtype!r} is not a pixel type") from None
    if args.out.exists() and not args.overwrite:
        raise SatdaskError(
            f"{args.out}: already exists; pass --overwrite to replace it with a sample of "
            f"{shape} {args.dtype} ({_mib(raw)} uncompressed)"
        )
    path = write_sample(
        args.out, size=args.size, bands=args.bands, dtype=args.dtype, seed=args.seed
    )
    print(
        f"wrote {path} ({shape} {args.dtype}: {_mib(raw)} uncompressed, "
        f"{_mib(path.stat().st_size)} on disk)"
    )


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:,.1f} MiB"


def cmd_ingest(args: argparse.Namespace) -> None:
    from satdask.io.download import ingest

    result = ingest(args.url, args.out, sha256=args.sha256)
    state = "downloaded" if result.downloaded else "already present"
    print(f"{state}: {result.path} sha256={result.sha256}")


def cmd_validate(args: argparse.Namespace) -> None:
    from satdask.core.grid import size_text
    from satdask.views.checks import check_same_crs, validate

    reports = [validate(scene, tile_size=args.tile_size, edge=args.edge) for scene in args.scenes]
    for report in reports:
        rows, cols = report.tiles
        print(
            f"ok {report.uri}: {size_text(report.height, report.width, report.bands)} "
            f"{report.dtype}, {report.crs}, nodata={report.nodata}, "
            f"acquired={report.acquisition_time or '-'}; "
            f"{size_text(rows, cols)} of {report.tile_size} px tiles (edge {report.edge})"
        )
        for warning in report.warnings:
            print(f"  warning: {warning}")
    if args.same_crs:
        check_same_crs(reports)
    elif len({r.crs for r in reports}) > 1:
        detail = "; ".join(f"{r.uri}: {r.crs}" for r in reports)
        print(f"warning: the scenes have different CRS ({detail}); --same-crs makes it an error")


def _scene_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "tile_size": args.tile_size,
        "tiles_per_chunk": args.tiles_per_chunk,
        "edge": args.edge,
        "bands": args.bands,
    }


def cmd_train(args: argparse.Namespace) -> None:
    from satdask.io.registry import ModelRegistry
    from satdask.pipeline.training import train

    registry = ModelRegistry(args.registry)  # refuses a file before any work
    registry.check_writable()
    model = train(
        args.scenes,
        scheduler=args.scheduler,
        allow_mixed_crs=args.allow_mixed_crs,
        **_scene_kwargs(args),
    )
    artifact = registry.save(model)
    print(
        f"model {artifact.id}: threshold={model.threshold:.6g} "
        f"on {model.lineage['tile_count']} tiles -> {artifact.uri}"
    )


def cmd_infer(args: argparse.Namespace) -> None:
    from satdask.io.registry import ModelRegistry, parse_model_ref
    from satdask.io.stac import expand_collections
    from satdask.pipeline.batch import run_batch

    directory, ref = parse_model_ref(args.model)
    artifact = ModelRegistry(directory).load(ref)
    _check_pixel_options(args, artifact)
    options = dict(
        scheduler=args.scheduler,
        allow_model_mismatch=args.allow_model_mismatch,
        overwrite=args.overwrite,
        resume=args.resume,
        progress=sys.stderr.isatty(),
        **_scene_kwargs(args),
    )
    # One scene is one store, unless it is an item collection (run_many expands the rest)
    scenes = expand_collections(args.scenes) if len(args.scenes) == 1 else args.scenes
    if scenes == args.scenes and len(scenes) == 1:
        pixel = {"padding": args.padding, "keep_scores": args.keep_scores}
        print(_summary(run_batch(scenes[0], artifact, args.out, **options, **pixel)))
        return
    if args.padding != "reflect" or args.keep_scores:
        raise SatdaskError(
            "--padding and --keep-scores apply to one scene per run for now; "
            f"run the {len(scenes)} scenes one at a time"
        )
    options["tile_size"] = options["tile_size"] or 256
    from satdask.pipeline.many import run_many

    manifest = run_many(scenes, artifact, args.out, **options)
    for o in manifest.scenes:
        c = o.counts or {}
        detail = (
            f"{c.get('tiles_inferred', 0)} inferred, {c.get('tiles_failed', 0)} failed, "
            f"health {o.health}"
            if o.status != "failed"
            else o.error
        )
        print(f"{o.status:8} {o.scene} -> {o.store or '-'}: {detail}")
    print(f"manifest: {manifest.path}")
    if manifest.failed:
        raise SatdaskError(
            f"{len(manifest.failed)} of {len(manifest.scenes)} scenes failed; see {manifest.path}"
        )


def _check_pixel_options(args: argparse.Namespace, artifact: Any) -> None:
    """--keep-scores means nothing to a model with no class scores per pixel: say so."""
    from satdask.models.base import PixelModel

    model = artifact.model
    if args.keep_scores and not (isinstance(model, PixelModel) and model.output == "pixel"):
        kind = "a window classifier" if isinstance(model, PixelModel) else f"a {model.kind} model"
        raise SatdaskError(
            f"--keep-scores: model {artifact.id} is {kind}, with no class scores per pixel"
        )


def _summary(result: Any) -> str:
    """What `infer` and `runs show` print of a run: one fact per line, sizes in one order."""
    from satdask.core.schema import scene_size

    r = result.record
    c, m, h, scene = r["counts"], r["monitoring"], r["health"], r["scene"]
    p = m["predictions"]
    lines = [
        f"run {r['run_id']} -> {result.path}",
        f"  scene  {scene['uri']} ({scene_size(scene['shape'])}, {scene['crs']})",
        f"  model  {r['model']['id'] or 'unregistered'} sha256={str(r['model']['sha256'])[:12]}",
        f"  tiles  {c['tiles_total']} total, {c['tiles_inferred']} inferred, "
        f"{c['tiles_skipped']} nodata, {c['tiles_failed']} failed",
    ]
    coverage = r.get("coverage")
    if coverage and coverage["pixels_uncovered"]:
        lines.append(
            f"  pixels {coverage['pixels_uncovered']:,} of {coverage['pixels_total']:,} "
            f"({_pct(100 * coverage['fraction_uncovered'])}) in no tile: the last "
            f"{coverage['rows_uncovered']} rows and {coverage['cols_uncovered']} cols "
            f"(--edge pad infers them)"
        )
    lines += _prediction_lines(result, p, r["config"])
    timings, resume = r.get("timings"), r.get("resume")
    if timings:
        p95 = m["latency"]["block_ms"]["p95"]
        lines.append(
            f"  time   {timings['total_s']:.2f} s total, {timings['compute_s']:.2f} s compute, "
            f"p95 block {'-' if p95 is None else f'{p95:.1f}'} ms"
        )
    if resume:
        lines.append(
            f"  blocks {resume['blocks_computed']} computed, "
            f"{resume['blocks_reused']} reused from a killed run"
        )
    lines.append(
        f"  health {h['status']}, drift={'yes' if h['drift_detected'] else 'no'}, "
        f"psi={_num(h['psi'])}"
    )
    lines += [f"  - {text}" for text in h["reasons"] if text.startswith("No data")]
    lines += [f"  - {text}" for text in h["recommendations"]]
    return "\n".join(lines)


def _prediction_lines(result: Any, p: Any, config: Any) -> list[str]:
    """Tiles per class: a threshold model's bright and dark, or a pixel or window model's
    classes in its order, with its windows and (pixel model) each class's pixel share."""
    if "classes" not in p:
        return [
            f"  preds  {p['bright']} bright ({_pct(p['bright_pct'])}), "
            f"{p['dark']} dark ({_pct(p['dark_pct'])})"
        ]
    classes = result.classes()
    order = {c.name: i for i, c in enumerate(classes)}
    names = sorted(p["classes"], key=lambda name: order.get(name, len(order)))
    pct = p.get("classes_pct") or {}
    lines = [
        "  preds  "
        + ", ".join(f"{p['classes'][n]} {n} ({_pct(pct.get(n))})" for n in names)
        + " tiles"
    ]
    if "window" in config:
        scores = ", class scores kept" if config.get("keep_scores") else ""
        lines.append(
            f"  window {config['window']} px, halo {config.get('halo', 0)} px, "
            f"padding {config.get('padding', '-')}{scores}"
        )
    if any(c.share is not None for c in classes):
        shares = ", ".join(
            f"{c.name} {_pct(None if c.share is None else 100 * c.share)}" for c in classes
        )
        lines.append(f"  share  {shares} of the valid pixels in ok tiles")
    cover = result.pixel_cover()
    if cover:
        shares = ", ".join(f"{name} {_pct(100 * share)}" for name, share in cover.items())
        lines.append(f"  cover  {shares} of all the scene's valid pixels")
    return lines


def _pct(value: float | None) -> str:
    """A percentage for people: one decimal, two significant digits below 1%."""
    if value is None:
        return "-"
    return f"{value:.2g}%" if 0 < abs(value) < 1 else f"{value:.1f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def cmd_runs_show(args: argparse.Namespace) -> None:
    from satdask.pipeline.runs import open_run

    result = open_run(args.store)
    print(json.dumps(result.attrs, indent=2) if args.json else _summary(result))


def cmd_runs_verify(args: argparse.Namespace) -> None:
    from satdask.errors import RunError
    from satdask.pipeline.verify import verify_run

    report = verify_run(args.store, registry=args.registry)
    print("\n".join([*report.lines(), report.summary()]))
    if not report.ok:
        names = ", ".join(c.name for c in report.failed)
        raise RunError(f"{args.store}: verification failed ({names})")


def cmd_export(args: argparse.Namespace) -> None:
    from satdask.export import reference_json, write_cog, write_export

    if args.format == "cog":
        if args.out is None:
            raise SatdaskError("--format cog writes a file: give it with --out PATH.tif")
        cog = write_cog(args.store, args.out, overwrite=args.overwrite)
        print(
            f"wrote {args.out} ({cog.size}, {cog.dtype}, {len(cog.classes)} classes, "
            f"{len(cog.overviews)} overview{'s' * (len(cog.overviews) != 1)}; class names also in "
            f"{cog.sidecar.name})"
        )
        return
    text = json.dumps(reference_json(args.store), indent=2, allow_nan=False)
    if args.out is None:
        print(text)
    else:
        write_export(args.out, text + "\n", overwrite=args.overwrite)
        print(f"wrote {args.out}")


def cmd_models_list(args: argparse.Namespace) -> None:
    from satdask.io.registry import ModelRegistry
    from satdask.models.onnx import OnnxModel

    artifacts = ModelRegistry(args.registry).list()
    if not artifacts:
        print(f"no models in {args.registry}")
    for a in artifacts:
        if isinstance(a.model, OnnxModel):
            print(f"{a.id}  {a.created_at}  {_describe_onnx(a.model)}  sha256={a.sha256[:12]}")
            continue
        training = a.model.to_dict()
        print(
            f"{a.id}  {a.created_at}  threshold={training['threshold']:.6g}  "
            f"tiles={a.lineage.get('tile_count', '-')}  sha256={a.sha256[:12]}"
        )


def _describe_onnx(model: OnnxModel) -> str:
    """`onnx semantic-segmentation classes=water,built window=64 halo=2`: one line."""
    names = ",".join(c.name for c in model.classes)
    return (
        f"onnx {model.spec.task} classes={names} window={model.window or 'dynamic'} "
        f"halo={model.halo}"
    )


def cmd_models_import(args: argparse.Namespace) -> None:
    from satdask.io.registry import ModelRegistry
    from satdask.models.onnx import OnnxModel

    registry = ModelRegistry(args.registry)
    params = {
        "threshold": args.threshold,
        "average_over": args.average_over,
        "dilation_size": args.dilation_size,
    }
    given = {k: v for k, v in params.items() if v is not None}
    if args.model == "s2cloudless":
        if args.metadata is not None:
            raise SatdaskError("--metadata applies to ONNX models; s2cloudless has its own")
        cloud = registry.import_s2cloudless(**given)
        p = cloud.model.to_dict()
        print(
            f"model {cloud.id} imported: s2cloudless {p['version']}, threshold {p['threshold']}, "
            f"average_over {p['average_over']}, dilation_size {p['dilation_size']}, "
            f"sha256 {p['sha256'][:12]}"
        )
        return
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise SatdaskError(f"{flags} apply to s2cloudless only, not to {args.model}")
    if args.metadata is None:
        raise SatdaskError(f"{args.model}: an ONNX model needs --metadata (its STAC MLM JSON)")
    artifact = registry.import_onnx(Path(args.model), metadata_path=args.metadata)
    model = artifact.model
    assert isinstance(model, OnnxModel)
    k = len(model.classes)
    print(
        f"model {artifact.id} imported: onnx, {model.spec.task}, {k} class{'es' * (k != 1)}, "
        f"window {model.window or 'dynamic'}, halo {model.halo}, sha256 {model.sha256[:12]}"
    )


def cmd_serve(args: argparse.Namespace) -> None:
    serve = _service_entry("serve")
    overrides = {
        "data_root": args.data_root,
        "model": args.model,
        "runs_root": args.runs_root,
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
    }
    serve(**{k: v for k, v in overrides.items() if v is not None})


def cmd_view(args: argparse.Namespace) -> None:
    _service_entry("view")(args.store, host=args.host, port=args.port)


def _service_entry(name: str) -> Callable[..., None]:
    """The service's `name` function, found through the `satdask.service` entry points.

    The service is a package on top of satdask, which never imports it: the service
    registers its entry points, and the CLI loads the one a command needs, by name.
    """
    from importlib.metadata import entry_points

    found = entry_points(group="satdask.service", name=name)
    try:
        return next(iter(found)).load()
    except (StopIteration, ImportError) as exc:
        detail = f" ({exc})" if isinstance(exc, ImportError) else ""
        raise SatdaskError(
            f"the service needs the 'service' extra: pip install 'satdask[service]'{detail}"
        ) from None


def cmd_demo(args: argparse.Namespace) -> None:
    from satdask.demo import run_demo

    run_demo(args.workdir, size=args.size, echo=print)


def main(argv: Sequence[str] | None = None) -> int:
    from satdask._logs import configure_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    args.debug = getattr(args, "debug", False)
    configure_logging(level=logging.DEBUG if args.debug else logging.INFO)
    if args.func is None:  # a command of subcommands, given none: its usage, not an error
        args.usage_of.print_help(sys.stderr)
        return EXIT_USAGE
    func: Callable[[argparse.Namespace], None] = args.func
    started = time.perf_counter()
    try:
        func(args)
    except SatdaskError as exc:
        return _fail(args, exc, str(exc))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(args, exc, f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        return _fail(args, None, "interrupted")
    except Exception as exc:  # a bug, not bad input: still one line unless --debug
        return _fail(args, exc, f"internal error: {type(exc).__name__}: {exc} (rerun with --debug)")
    logging.getLogger("satdask.cli").debug("done in %.2f s", time.perf_counter() - started)
    return 0


def _fail(args: argparse.Namespace, exc: BaseException | None, message: str) -> int:
    if args.debug and exc is not None:
        raise exc
    print(f"satdask: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
