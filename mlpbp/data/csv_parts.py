"""A CSV file parsed by pyarrow's streaming reader, block by block: in one part, or cut at line
ends into byte ranges, each streamed by a reader of its own in a thread (pyarrow parses without
the GIL), the first range's header and column types given to the others.

Block by block, memory stays near the table's own size (``read_csv`` holds the whole file's
text while it converts), and the rows read are known as it goes. When a file is cut into parts,
and when only some of its columns are read (a wide table, a group of columns at a time), is
data/tables.py's choice."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

# The streaming reader's block: the size that parsed fastest (benchmarks/README.md, "Reading a CSV").
BLOCK_BYTES = 2 << 20

# progress(rows read so far, fraction of the file read); rows are estimated until the end.
Progress = Callable[[int, float], None]


class ByteRange:
    """The bytes [lo, hi) of an open binary file, as a file object for pyarrow to stream."""

    closed = False

    def __init__(self, f, lo: int, hi: int) -> None:
        f.seek(lo)
        self.f, self.left, self.done = f, hi - lo, 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(self.left if n is None or n < 0 else min(n, self.left))
        self.left -= len(data)
        self.done += len(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


def line_cuts(f, size: int, parts: int) -> list[int]:
    """Byte offsets [0, …, size] cutting the file into up to ``parts`` ranges at line starts."""
    cuts = [0]
    for k in range(1, parts):
        f.seek(k * size // parts)
        f.readline()  # to the start of the next line
        if f.tell() > cuts[-1] and f.tell() < size:
            cuts.append(f.tell())
    return [*cuts, size]


def stream_csv(
    path: Path,
    size: int,
    parse: pacsv.ParseOptions,
    column_types: dict,
    parts: int = 1,
    progress: Progress | None = None,
    block_size: int = BLOCK_BYTES,
    include: list[str] | None = None,
    names: list[str] | None = None,
) -> pa.Table:
    """The table in the ``size`` bytes of ``path``, in up to ``parts`` parts (one per thread);
    ``column_types`` fixes the types of the columns it names. ``include``: those columns alone,
    ``names`` being the header's (read by the caller; the file's first line is skipped). A
    part's error is raised here."""
    with contextlib.ExitStack() as files:
        cuts = line_cuts(files.enter_context(path.open("rb")), size, parts)
        ranges = [ByteRange(files.enter_context(path.open("rb")), lo, hi) for lo, hi in zip(cuts, cuts[1:])]
        header = {} if names is None else {"column_names": names, "skip_rows": 1}
        first = pacsv.open_csv(
            ranges[0],
            read_options=pacsv.ReadOptions(block_size=block_size, **header),
            parse_options=parse,
            convert_options=pacsv.ConvertOptions(
                strings_can_be_null=True, column_types=column_types, include_columns=include or []
            ),
        )
        schema = first.schema
        readers = [first] + [
            pacsv.open_csv(
                part,
                read_options=pacsv.ReadOptions(block_size=block_size, column_names=names or schema.names),
                parse_options=parse,
                convert_options=pacsv.ConvertOptions(
                    strings_can_be_null=True,
                    column_types=dict(zip(schema.names, schema.types)),
                    include_columns=include or [],
                ),
            )
            for part in ranges[1:]
        ]
        batches: list[list[pa.RecordBatch]] = [[] for _ in readers]
        rows = [0] * len(readers)

        def report() -> None:
            if progress is not None:
                progress(sum(rows), min(sum(r.done for r in ranges) / max(size, 1), 1.0))

        def drain(i: int, after_each=None) -> None:
            for batch in readers[i]:
                batches[i].append(batch)
                rows[i] += batch.num_rows
                if after_each is not None:
                    after_each()

        if len(readers) == 1:
            drain(0, report)
        else:  # the parts in threads; progress from this one, which only waits
            with ThreadPoolExecutor(len(readers), thread_name_prefix="mlpbp-csv") as pool:
                futures = [pool.submit(drain, i) for i in range(len(readers))]
                running = set(futures)
                while running:
                    _, running = wait(running, timeout=0.25)
                    report()
                for f in futures:
                    f.result()  # a part's error, raised here in the caller's thread
        return pa.Table.from_batches([b for part in batches for b in part], schema=schema)
