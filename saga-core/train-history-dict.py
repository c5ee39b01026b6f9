"""Trains the zstd dictionary that closed histories and execution payloads are
compressed against (saga-core/src/history-dict-vN.zdict, see history.rs).

    cargo xtask bench storage --orders 1000 --no-docs
    target/venv/bin/python saga-core/train-history-dict.py target/bench-storage/data \
        saga-core/src/history-dict-v2.zdict

It reads the closed histories of that data dir (order-saga and its Express child
order-prepare), and trains on half of them and reports on the other half. The bench's
orders all ship to one made-up address from one customer: each sample's address,
names and ids are replaced by random ones first, so the dictionary learns the
histories' structure (state names, event shapes, field names), not the bench's data.
A dictionary is part of the stored format: a new one is a new format number in
history.rs, and every older one stays compiled in so old frames still read.
"""

import random
import re
import sqlite3
import string
import sys
from pathlib import Path

import zstandard

DICT_BYTES = 65536
LEVEL = 3
# history.rs's formats: the first byte of a frame names the dictionary it needs.
KNOWN = {1: "history-dict-v1.zdict", 2: "history-dict-v2.zdict"}


def varint(buf, at):
    value, shift = 0, 0
    while True:
        b = buf[at]
        at += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, at
        shift += 7


def put_varint(out, v):
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def events(raw):
    at = 0
    while at < len(raw):
        eid, at = varint(raw, at)
        prev, at = varint(raw, at)
        ts = raw[at : at + 8]
        at += 8
        n, at = varint(raw, at)
        kind = raw[at : at + n].decode()
        at += n
        n, at = varint(raw, at)
        details = None
        if n:
            details = raw[at : at + n - 1].decode()
            at += n - 1
        yield eid, prev, ts, kind, details


def encode(evs):
    out = bytearray()
    for eid, prev, ts, kind, details in evs:
        put_varint(out, eid)
        put_varint(out, prev)
        out += ts
        k = kind.encode()
        put_varint(out, len(k))
        out += k
        if details is None:
            put_varint(out, 0)
        else:
            d = details.encode()
            put_varint(out, len(d) + 1)
            out += d
    return bytes(out)


def word(rng, n):
    return "".join(rng.choice(string.ascii_letters) for _ in range(n))


def scrub(raw, rng):
    """The history with the bench's one address and its ids made random (consistently
    within the history, as one order repeats its own)."""
    fixed = {
        "Load": word(rng, rng.randint(4, 12)),
        "1 Main St": f"{rng.randint(1, 9999)} {word(rng, rng.randint(4, 10))} St",
        "Boston": word(rng, rng.randint(4, 10)),
        "02101": "".join(rng.choice(string.digits) for _ in range(5)),
    }
    ids = {}

    def new_id(m):
        return ids.setdefault(m.group(0), "".join(rng.choice("0123456789abcdef") for _ in range(16)))

    out = []
    for eid, prev, ts, kind, details in events(raw):
        if details is not None:
            for old, new in fixed.items():
                details = details.replace(old, new)
            details = re.sub(r"load-[0-9a-f]+(?:-\d+)?", new_id, details)
        out.append((eid, prev, ts, kind, details))
    return encode(out)


def main():
    data_dir, out_path = Path(sys.argv[1]), Path(sys.argv[2])
    here = Path(__file__).resolve().parent / "src"
    decoders = {
        f: zstandard.ZstdDecompressor(
            dict_data=zstandard.ZstdCompressionDict((here / name).read_bytes())
        )
        for f, name in KNOWN.items()
        if (here / name).exists()
    }
    db = sqlite3.connect(data_dir / "oms.sqlite3")
    rng = random.Random(16)
    samples = []
    for (frame,) in db.execute("SELECT data FROM histories ORDER BY execution_id"):
        raw = decoders[frame[0]].decompress(frame[1:], max_output_size=1 << 26)
        samples.append(scrub(raw, rng))
    rng.shuffle(samples)
    half = len(samples) // 2
    train, held_out = samples[:half], samples[half:]
    trained = zstandard.train_dictionary(DICT_BYTES, train, level=LEVEL)
    out_path.write_bytes(trained.as_bytes())
    print(f"{len(train)} samples trained, {len(held_out)} held out; wrote {out_path}")
    for name in sorted(set(KNOWN.values()) | {out_path.name}):
        path = here / name if name != out_path.name else out_path
        if not path.exists():
            continue
        c = zstandard.ZstdCompressor(level=LEVEL, dict_data=zstandard.ZstdCompressionDict(path.read_bytes()))
        mean = sum(len(c.compress(s)) for s in held_out) / len(held_out)
        print(f"  {name}: {mean:.0f} bytes a held-out history (raw {sum(map(len, held_out)) / len(held_out):.0f})")


if __name__ == "__main__":
    main()
