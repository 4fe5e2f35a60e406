"""Shared fixtures: small GeoTIFFs written on demand."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from scipy import ndimage


def write_tif(path: Path, data: np.ndarray, *, crs="EPSG:32635", transform=None, nodata=None, tags=None,
              descriptions=None, mask=None, **profile) -> Path:
    """Write a (bands, rows, cols) array as a tiled GeoTIFF."""
    arr = data[None] if data.ndim == 2 else data
    count, rows, cols = arr.shape
    transform = transform or Affine(0.5, 0, 400000, 0, -0.5, 5370000)
    with rasterio.open(path, "w", driver="GTiff", width=cols, height=rows, count=count, dtype=arr.dtype,
                       crs=crs, transform=transform, nodata=nodata, tiled=True, blockxsize=256, blockysize=256,
                       compress="deflate", **profile) as ds:
        ds.write(arr)
        if tags:
            ds.update_tags(**tags)
        for i, d in enumerate(descriptions or (), start=1):
            ds.set_band_description(i, d)
        if mask is not None:
            ds.write_mask(mask.astype(np.uint8) * 255)
    return path


def textured(shape, seed=0, scale=3.0):
    """A smooth random texture in 0-1 with edges (blobs), float32."""
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.normal(size=shape), scale)
    blobs = ndimage.gaussian_filter((rng.random(shape) > 0.995).astype(float), 2) > 0.05
    img = (base - base.min()) / (np.ptp(base) + 1e-9) * 0.6 + blobs * 0.4
    return img.astype(np.float32)


@pytest.fixture
def tif_factory(tmp_path):
    """Call with an array (and write_tif options) to get a GeoTIFF path in a temp folder."""
    counter = {"n": 0}

    def make(data, name=None, **kw):
        counter["n"] += 1
        return write_tif(tmp_path / (name or f"scene{counter['n']}.tif"), data, **kw)

    return make


@pytest.fixture
def four_band(tmp_path):
    """A 4-band uint16 reflectance scene (blue, green, red, nir) with date tags, 400 x 400 px at 0.5 m."""
    tex = textured((400, 400), seed=1)
    spectra = np.array([0.05, 0.08, 0.1, 0.3])[:, None, None]
    data = ((0.5 + tex[None]) * spectra * 10000).astype(np.uint16)
    return write_tif(tmp_path / "four.tif", data, nodata=0, tags={"ACQUISITION_DATE": "2024-05-01"},
                     descriptions=("blue", "green", "red", "nir"))


def today() -> dt.date:
    return dt.date.today()


PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    import uuid

    import psycopg

    name = f"basewatch_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at 127.0.0.1:5432 ({exc}); .ci/run starts it")
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
