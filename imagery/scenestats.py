"""Scene-wide statistics, measured once and handed to every block.

Several stages decide by a number taken over the whole scene: a noise sigma,
a median and MAD, an Otsu threshold, whether an explanation is specific to
the pair. A stage asks a :class:`SceneStats` for such a number by name
(:meth:`SceneStats.take`):

* analysing a whole scene, the number is computed from the arrays at hand
  and recorded (nothing changes for a scene analysed in one piece);
* analysing block-wise, the statistics pass runs the stages on a sample of
  the grid and records every number they ask for, then each block gets
  them :meth:`frozen`, so a block decides as the whole scene would and not
  by its own contents.

A frozen statistic the sample never asked for (e.g. the lean direction of a
sample with no candidate change) is computed on the block and noted in
:attr:`SceneStats.local`.
"""

from __future__ import annotations

from typing import Any, Callable


class SceneStats:
    """Named scene-wide statistics (floats, small arrays, flags), recorded or frozen.

    Parameters
    ----------
    values : dict, optional
        Recorded statistics by name; shared with every :meth:`scope` view.
    frozen : bool
        Use recorded values and record nothing new.
    """

    def __init__(self, values: dict | None = None, *, frozen: bool = False, prefix: str = "",
                 local: set | None = None):
        self.values: dict[str, Any] = {} if values is None else values
        self.is_frozen = frozen
        self.prefix = prefix
        self.local: set[str] = set() if local is None else local

    def take(self, name: str, compute: Callable[[], Any]) -> Any:
        """The statistic ``name``: recorded, or ``compute()`` (recorded unless frozen)."""
        key = self.prefix + name
        if key in self.values:
            return self.values[key]
        value = compute()
        if self.is_frozen:
            self.local.add(key)
        else:
            self.values[key] = value
        return value

    def scope(self, name: str) -> SceneStats:
        """A view whose names are prefixed with ``name.`` (one stage or one date), sharing the values."""
        return SceneStats(self.values, frozen=self.is_frozen, prefix=f"{self.prefix}{name}.", local=self.local)

    def frozen(self) -> SceneStats:
        """A frozen copy of everything recorded (for the blocks)."""
        return SceneStats(dict(self.values), frozen=True)

    def __repr__(self) -> str:
        state = "frozen" if self.is_frozen else "recording"
        return f"SceneStats({state}, {len(self.values)} values, prefix={self.prefix!r})"


def scene_stats(stats: SceneStats | None) -> SceneStats:
    """``stats``, or a fresh recorder (a whole scene measures its own statistics)."""
    return SceneStats() if stats is None else stats
