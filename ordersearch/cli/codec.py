"""``encode``, ``decode`` and ``codec train`` / ``codec eval``: real bitstreams with a schedule, and the codec
fine-tuned with one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..errors import OrdersearchError
from ..schedule_io import load_schedule
from .common import DEVICE_HELP, Parser, check_output, device


def weights(args: argparse.Namespace):
    """The schedule's context-model weights (``ContextWeights``): --weights FILE, the file beside it, its run's
    store, or (--train) trained now."""
    from ..models.context_weights import load_weights
    from ..run import stored_weights

    if args.weights is not None:
        return load_weights(args.weights)  # the codec moves them to the schedule's positions, or says they do not fit
    try:
        return stored_weights(args.schedule)
    except OrdersearchError:
        if not getattr(args, "train", False):
            raise
    from ..run.folder import train_weights

    return train_weights(args.schedule, device(args))


def codec(args: argparse.Namespace, stream: bytes | None = None):
    """The codec of --codec FILE (an any-order one with --schedule's schedule, or ``stream``'s), or the bundled
    base codec with --schedule's context model."""
    from ..codec import MultistageCodec

    if args.codec is None and args.schedule is None:
        raise OrdersearchError("give --schedule S.json or --codec CODEC.pt")
    if args.codec is not None:
        from ..codec.bitstream import read_header
        from ..codec.codec_file import load_codec
        from ..schedule import Schedule

        if args.weights is not None:
            raise OrdersearchError("--weights goes with --schedule; a codec file carries its own")
        schedule = load_schedule(args.schedule)[0] if args.schedule is not None else None
        if schedule is None and stream is not None:  # the schedule the stream was made with
            header, _ = read_header(stream)
            try:
                schedule = Schedule.from_grid(header.grid) if header.patch else None
            except OrdersearchError as e:
                raise OrdersearchError(f"{args.input}: corrupted bitstream ({e})") from None
        return load_codec(args.codec, schedule)[0]

    schedule, meta = load_schedule(args.schedule)
    state = weights(args)
    try:
        return MultistageCodec.from_weights(schedule, state, kernel=meta.kernel)
    except OrdersearchError as e:
        raise OrdersearchError(f"--weights {args.weights}: {e}" if args.weights else str(e)) from None


#: where ``decode`` without --schedule or --codec looks for the schedule file whose weights made a stream
SEARCHED = (Path("results"), Path("runs"))
#: schedule files it reads there at most (a folder of thousands of runs: give --schedule instead)
MAX_SEARCHED = 2000


def stream_codec(data: bytes, args: argparse.Namespace):
    """The codec that made ``data``, from its header (the schedule it records, and the identity of its weights):
    --weights FILE, or the schedule files under results/ and runs/ whose weights (beside them or in their
    run's store) have that identity."""
    from ..codec import MultistageCodec
    from ..codec.bitstream import read_header
    from ..models.context_weights import load_weights
    from ..run import stored_weights
    from ..schedule import Schedule

    header, _ = read_header(data)
    if header.patch == 0:
        raise OrdersearchError(f"{args.input}: made by the serial codec of a codec file; give --codec CODEC.pt")
    try:
        schedule = Schedule.from_grid(header.grid)
    except OrdersearchError as e:
        raise OrdersearchError(f"{args.input}: corrupted bitstream ({e})") from None
    if args.weights is not None:
        return MultistageCodec.from_weights(schedule, load_weights(args.weights), kernel=header.kernel)
    canonical, tried = schedule.canonical(), 0
    for root in SEARCHED:
        for path in sorted(root.rglob("*.json"))[:MAX_SEARCHED] if root.is_dir() else ():
            try:
                found, meta = load_schedule(path)
                if found.canonical() != canonical or meta.kernel != header.kernel:
                    continue
                tried += 1
                codec = MultistageCodec.from_weights(schedule, stored_weights(path), kernel=header.kernel)
            except OrdersearchError:  # not a schedule file, or no weights for it: not this stream's
                continue
            if codec.identity == header.identity:
                return codec
    raise OrdersearchError(
        f"{args.input}: made with the {schedule.patch}x{schedule.patch} schedule {schedule.array().tolist()} and "
        f"weights of identity {header.identity.hex()}; none of the {tried} schedule files of that schedule under "
        f"{' or '.join(map(str, SEARCHED))} has them; give --schedule S.json (its weights beside it or in its run's "
        "store), --weights FILE or --codec CODEC.pt")


def stages(codec, image: np.ndarray) -> int:
    """Sequential decoding stages of ``image`` (the serial model's grow with the latent)."""
    from ..models.hyperprior import STRIDE

    per = STRIDE // 16  # latents per padded 64-pixel block: one latent per 16 pixels
    return codec.decoding_stages(-(-image.shape[0] // STRIDE) * per, -(-image.shape[1] // STRIDE) * per)


def cmd_encode(args: argparse.Namespace) -> int:
    import time

    from ..data import read_image
    from ..files import atomic_write

    image = read_image(args.image)  # inputs and output checked before any training
    check_output(args.out)
    chosen = codec(args)
    start = time.time()
    encoded = chosen.encode(image)
    seconds = time.time() - start
    atomic_write(args.out, encoded.data)
    pixels = image.shape[0] * image.shape[1]
    y_bits = sum(encoded.y_bits_per_stage)
    print(f"wrote {args.out}: {len(encoded.data)} bytes, {8 * len(encoded.data) / pixels:.4f} bpp "
          f"(y {y_bits / pixels:.4f}, z {encoded.z_bits / pixels:.4f}, header {8 * encoded.header_bytes / pixels:.4f}); "
          f"y within {100 * (y_bits / encoded.estimate_y_bits - 1):+.2f}% of the model's estimate; "
          f"{stages(chosen, image)} decoding stages; {seconds:.2f}s")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    import time

    from ..codec.bitstream import MAX_BITSTREAM_BYTES
    from ..data import write_png
    from ..files import read_regular_file

    try:
        data = read_regular_file(args.input, MAX_BITSTREAM_BYTES)
    except IsADirectoryError:
        raise OrdersearchError(f"{args.input}: is a folder, not a bitstream") from None
    except FileNotFoundError:
        raise OrdersearchError(f"{args.input}: no such file") from None
    except ValueError as e:  # a FIFO or device, or far larger than any bitstream
        raise OrdersearchError(f"{args.input}: {e}") from None
    check_output(args.out)
    if args.out.suffix.lower() != ".png":  # the decoded image is exact: never re-encode it lossily or misname it
        raise OrdersearchError(f"{args.out}: decode writes PNG images; name the output .png")
    chosen = codec(args, data) if args.schedule is not None or args.codec is not None else stream_codec(data, args)
    start = time.time()
    image = chosen.decompress(data)
    seconds = time.time() - start
    write_png(image, args.out)
    print(f"wrote {args.out}: {image.shape[1]}x{image.shape[0]}, {8 * len(data) / (image.shape[0] * image.shape[1]):.4f} "
          f"bpp, {stages(chosen, image)} decoding stages, {seconds:.2f}s")
    return 0


def cmd_codec_train(args: argparse.Namespace) -> int:
    import hashlib
    import json
    import time
    from dataclasses import asdict

    from ..codec.codec_file import codec_of, open_codec, save_codec
    from ..data import photo_splits, read_image
    from ..schedule import Schedule
    from ..evaluation.joint import JointConfig, fine_tune
    from ..models.joint import ANY_ORDER, SERIAL
    from ..run import stored_weights

    check_output(args.out)
    if args.serial:
        schedule, label, context_state = SERIAL, args.label or SERIAL, None
    elif args.any_order is not None:
        if not 2 <= args.any_order <= 4:
            raise OrdersearchError(f"--any-order {args.any_order}: patches of 2 to 4")
        schedule, label, context_state = ANY_ORDER, args.label or f"any-order-{args.any_order}x{args.any_order}", None
    else:
        schedule, _ = load_schedule(args.schedule)
        label = args.label or args.schedule.stem
        try:  # start from the context model trained on the frozen latents, where there is one
            context_state = stored_weights(args.schedule).state
        except OrdersearchError:
            context_state = None
    base = None
    if args.base:  # the transforms of any codec file, an any-order one included
        opened = open_codec(args.base)
        base = codec_of(*opened, Schedule.named("single", opened[2]) if opened[2] else None)[0].base
    config = JointConfig(lmbda=args.lmbda, max_steps=args.max_steps, batch=args.batch, crop=args.crop,
                         seed=args.seed, max_seconds=None if args.minutes is None else 60 * args.minutes)
    photos = photo_splits(args.photos)
    on = device(args)
    train = [read_image(p) for p in photos["train"]]
    val = [read_image(p) for p in photos["val"]]
    # the checkpoint belongs to this very fine-tuning: another lambda or schedule never resumes from it
    key = json.dumps([str(schedule), asdict(config), str(args.base), context_state is not None, args.any_order],
                     sort_keys=True)
    checkpoint = args.out.with_name(f"{args.out.name}.{hashlib.sha256(key.encode()).hexdigest()[:12]}.partial")
    if not args.quiet:
        print(f"ordersearch: fine-tuning {label} at lambda {args.lmbda}: {len(train)} train / {len(val)} val photos "
              f"on {on}, at most {config.max_steps} steps; context model from "
              f"{'its trained weights' if context_state is not None else 'zero (the hyperprior alone)'}"
              f"{'; resuming' if checkpoint.exists() else ''}", file=sys.stderr)
    start = time.time()
    tuned = fine_tune(schedule, train, val, config, on, base, context_state, checkpoint, not args.quiet,
                      patch=args.any_order or 4)
    seconds = time.time() - start
    best = min(v for _, _, v in tuned.curve)
    save_codec(args.out, schedule, tuned.model, {
        "label": label, "lmbda": args.lmbda, "steps": tuned.steps, "best_step": tuned.best_step,
        "hit_cap": tuned.hit_cap, "val_loss": best, "curve": tuned.curve, "seconds": round(seconds, 1),
        "device": str(on), "config": asdict(config), "photos": str(args.photos),
        "base": str(args.base) if args.base else "bundled",
        "context_start": "trained weights" if context_state is not None else "zero"})
    print(f"wrote {args.out}: {label} at lambda {args.lmbda}, {tuned.steps} steps (best at {tuned.best_step}"
          f"{'; it hit the step cap still improving: raise --max-steps' if tuned.hit_cap else ''}), "
          f"val loss {best:.4f}, {seconds:.0f} s on {on}")
    return 0


def cmd_codec_eval(args: argparse.Namespace) -> int:
    import pandas as pd
    from tqdm.auto import tqdm

    from ..codec.codec_file import codec_of, open_codec
    from ..codec.rd import POINT_COLUMNS, bd_rate_tables, measure, measured
    from ..data import photo_splits
    from ..files import atomic_write

    schedules = [(path, *load_schedule(path)) for path in args.schedule]
    codecs = []  # every file checked before any work; an any-order codec once per --schedule, labelled by it
    for opened in map(open_codec, args.codecs):
        path, _, any_order = opened
        if not any_order:
            codecs.append((path, *codec_of(*opened)))
            continue
        if not schedules:
            raise OrdersearchError(f"{path}: an any-order codec; give the schedules to measure it with "
                                   "(--schedule S.json ...)")
        for file, schedule, meta in schedules:
            each, info = codec_of(*opened, schedule)
            codecs.append((path, each, {**info, "label": f"{info.get('label', path.stem)} "
                                                          f"{meta.name or file.stem}"}))
    photos = photo_splits(args.photos)[args.split]
    if args.out.exists() and not args.out.is_dir():
        raise OrdersearchError(f"{args.out}: is a file; --out is a folder")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    bar = tqdm(total=len(codecs) * len(photos), desc="codec eval", unit="photo", disable=args.quiet or None,
               file=sys.stderr, leave=False)
    for path, each, info in codecs:
        label = info.get("label", path.stem)
        bar.set_postfix_str(label)
        rows += measure(each, photos, label, float(info.get("lmbda", float("nan"))), lambda _: bar.update(1))
    bar.close()
    points = pd.DataFrame(rows, columns=list(POINT_COLUMNS))
    if not points.exact.all():
        raise OrdersearchError(f"decoding did not reproduce the encoder's image for {sorted(set(points.label[~points.exact]))}")
    atomic_write(args.out / "points.csv", points.to_csv(index=False).encode())
    table = bd_rate_tables(points, args.references, resamples=args.resamples)
    atomic_write(args.out / "bd_rate.csv", table.to_csv(index=False).encode())
    columns = ["bpp", "psnr", "ms_ssim", "encode_seconds", "decode_seconds"]
    summary = points.groupby(["label", "lmbda"])[columns].mean()
    print(f"{len(photos)} {args.split} photos from {args.photos}; means per codec:")
    print(summary.round(4).to_string())
    if len(table):
        print("BD-rate (%, negative: fewer bits at the same quality), 95% bootstrap interval over photos:")
        for r in table.itertuples():
            interval = (f"[{r.low:+.2f}, {r.high:+.2f}]" if not np.isnan(r.low) else
                        f"no interval: {r.undefined_resamples} of {args.resamples} resamples have no BD-rate")
            print(f"  {r.label} vs {r.reference} ({r.metric}): {r.bd_rate:+.2f} {interval}")
        if "ms_ssim_db" not in measured(points):
            print("  (no MS-SSIM BD-rate: a photo has a side of 160 pixels or less, too small for five scales)")
    else:
        print("no BD-rate: it needs two or more operating points (lambdas) of a label and of a reference "
              f"({', '.join(args.references)})")
    print(f"wrote {args.out / 'points.csv'} and {args.out / 'bd_rate.csv'}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    encode = sub.add_parser("encode", help="compress an image with a schedule's trained context model",
                            description="Compress IMAGE into OUT with the bundled base codec and the multistage "
                            "context model of a schedule (weights from the schedule's run store, or --weights).")
    encode.add_argument("image", type=Path, metavar="IMAGE", help="RGB image to compress")
    encode.add_argument("out", type=Path, metavar="OUT", help="bitstream file to write")
    encode.add_argument("--train", action="store_true",
                        help="train the schedule's context model on the built-in latents if none is stored")
    decode = sub.add_parser("decode", help="decompress a bitstream made by `ordersearch encode`",
                            description="Decompress IN into the PNG OUT with the schedule and weights it was made "
                            "with: the stream records its schedule and the identity of its weights, found among the "
                            "schedule files under results/ and runs/ (or give --schedule, --weights or --codec).")
    decode.add_argument("input", type=Path, metavar="IN", help="bitstream written by encode")
    decode.add_argument("out", type=Path, metavar="OUT.png", help="PNG image to write")
    for p, func in ((encode, cmd_encode), (decode, cmd_decode)):
        p.add_argument("--schedule", type=Path, metavar="S.json",
                       help="schedule file (with an any-order --codec: the schedule to use it with)" if p is encode
                       else "schedule file (default: the stream's, its weights found by their identity under "
                       "results/ and runs/)")
        p.add_argument("--codec", type=Path, metavar="CODEC.pt",
                       help="a codec file of `ordersearch codec train` (base codec and context model in one; an "
                       "any-order one decodes with any schedule of its patch size)")
        p.add_argument("--weights", type=Path, metavar="FILE",
                       help="context-model weights (default: beside the schedule file, or the schedule's dedicated "
                       "model in its run's store)")
        p.set_defaults(func=func)

    top = sub.add_parser("codec", help="fine-tune the whole codec with a schedule; rate-distortion and BD-rate",
                         description="Codec-level truth: `codec train` fine-tunes the bundled codec's transforms, "
                         "hyperprior and a schedule's context model end to end on photos; `codec eval` sends "
                         "photos through encode/decode of codec files and reports bpp, PSNR and BD-rate.")
    csub = top.add_subparsers(dest="codec_command", required=True, parser_class=Parser)
    ct = csub.add_parser("train", help="fine-tune base codec + context model of a schedule at one lambda",
                         description="Fine-tune the base codec and a schedule's context model jointly (loss: bits "
                         "of y and z per pixel + lambda * 255^2 * MSE) to a plateau on the val photos; writes one "
                         "codec file. An interrupted run resumes from OUT's checkpoint.")
    which = ct.add_mutually_exclusive_group(required=True)
    which.add_argument("--schedule", type=Path, metavar="S.json", help="schedule file (single: hyperprior alone)")
    which.add_argument("--serial", action="store_true", help="the serial raster context model instead")
    which.add_argument("--any-order", type=int, metavar="N", dest="any_order",
                       help="one context model for every schedule of NxN patches, trained over random schedules: "
                       "the codec then encodes with any schedule given at encode time")
    ct.add_argument("--lmbda", type=float, default=0.0067, metavar="L",
                    help="rate-distortion trade-off (default 0.0067, the bundled codec's: about 0.3 bpp)")
    ct.add_argument("--out", type=Path, required=True, metavar="CODEC.pt", help="codec file to write")
    ct.add_argument("--base", type=Path, metavar="CODEC.pt", help="start the transforms from this codec file's "
                    "(another operating point), not the bundled codec")
    ct.add_argument("--label", help="name of this codec in tables (default: the schedule file's name, or serial)")
    ct.add_argument("--max-steps", type=int, default=20000, metavar="N",
                    help="step cap (default 20000); training stops at its third validation plateau, the learning "
                    "rates divided by 10 at the first two")
    ct.add_argument("--minutes", type=float, metavar="M", help="time cap")
    ct.add_argument("--batch", type=int, default=8, help="crops per step (default 8)")
    ct.add_argument("--crop", type=int, default=128, help="crop side, a multiple of 64 (default 128)")
    ct.add_argument("--seed", type=int, default=0, help="seed of the crops and the noise (default 0)")
    ct.set_defaults(func=cmd_codec_train)
    ce = csub.add_parser("eval", help="bpp, PSNR, times and BD-rate of codec files on photos",
                         description="Compress and decompress every photo of a split with every codec file (real "
                         "bitstreams: headers and z included), then BD-rate (PCHIP) of every label against the "
                         "references, with a paired bootstrap interval over photos. Writes OUT/points.csv and "
                         "OUT/bd_rate.csv.")
    ce.add_argument("codecs", type=Path, nargs="+", metavar="CODEC.pt", help="codec files of `codec train`")
    ce.add_argument("--split", default="test", choices=("train", "val", "test"), help="photos (default test)")
    ce.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for points.csv and bd_rate.csv")
    ce.add_argument("--references", nargs="+", default=["serial", "checkerboard", "single"], metavar="LABEL",
                    help="labels to compare against (default: serial checkerboard single)")
    ce.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    ce.add_argument("--schedule", type=Path, nargs="+", default=[], metavar="S.json",
                    help="schedules an any-order codec is measured with, each a label of its own")
    for p in (ct, ce):
        p.add_argument("--photos", type=Path, default=Path("data/photos"), metavar="DIR",
                       help="photos with a manifest.csv split (experiments/fetch_photos.py writes data/photos, the "
                       "default) or train/, val/ and test/ folders")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
    ct.add_argument("--device", default="auto", help=DEVICE_HELP)
    ce.set_defaults(func=cmd_codec_eval)
