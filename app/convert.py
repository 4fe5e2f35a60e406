"""``python -m app.convert SRC DST DTYPE PARENT_PID``: one scene conversion to COG, in its own process.

Run by :class:`app.ingest.Converter`. Exit status 0 done, 2 invalid scene (message on stderr),
3 disk full. The process is killed by the kernel when the server that started it dies.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from app.jobs import die_with_parent

    src, dst, dtype, parent = argv
    die_with_parent(int(parent))
    from app.ingest import convert_to_cog
    from imagery.errors import InvalidSceneError, first_line

    try:
        convert_to_cog(Path(src), Path(dst), dtype)
    except InvalidSceneError as exc:
        print(first_line(exc), file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return 3
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
