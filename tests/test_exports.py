"`--export rois,geojson`: Fiji ROI sets and QuPath GeoJSON that read back to the predicted labels."
import json

import numpy as np
import pytest
import roifile

from helpers import assert_one_line_error, dsb_folder, run_script
from nuclei_unet.data import decode_file, list_samples
from nuclei_unet.export import polygon_mask


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    "Three DSB2018 images (links), one of them not square."
    def pick(samples):
        return [*samples[:2], next(s for s in samples if decode_file(s.image).shape[0] != decode_file(s.image).shape[1])]
    return dsb_folder(tmp_path_factory.mktemp('images'), pick)


def read_back(out, i, shape):
    "Per label: the masks its ROI and its GeoJSON feature rasterize to."
    rois = {int(r.name): polygon_mask(r.coordinates(multi=True) if r.composite else [r.coordinates()], shape)
            for r in roifile.roiread(out / 'rois' / f'{i}.zip')} if (out / 'rois' / f'{i}.zip').stat().st_size > 22 else {}
    features = json.loads((out / 'geojson' / f'{i}.geojson').read_text())['features']
    shapes = {}
    for f in features:
        g = f['geometry']
        polys = [g['coordinates']] if g['type'] == 'Polygon' else g['coordinates']
        shapes[f['properties']['label']] = (polygon_mask([np.array(r[:-1]) for p in polys for r in p], shape), f['properties'])
    return rois, shapes


def test_exports_read_back_to_the_labels(folder, tmp_path):
    out = tmp_path / 'out'
    code, stdout, err = run_script('nuclei_predict', '--data', folder, '--out', out, '--export', 'rois,geojson', '--pixel-size', 0.65, '--figures', 'none')
    assert code == 0, err
    assert 'rois/, geojson/' in stdout
    for s in list_samples(folder):
        labels = decode_file(out / 'labels' / f'{s.id}.png').astype(np.int32)
        rois, shapes = read_back(out, s.id, labels.shape)
        assert sorted(rois) == sorted(shapes) == list(range(1, labels.max() + 1))
        for i in range(1, labels.max() + 1):
            assert np.array_equal(rois[i], labels == i) and np.array_equal(shapes[i][0], labels == i)      # exact, not just IoU >= 0.9
            assert shapes[i][1]['objectType'] == 'detection'
            assert shapes[i][1]['measurements']['area_um2'] == pytest.approx((labels == i).sum() * 0.65 ** 2, rel=1e-5)


def test_export_added_later_is_written_for_images_already_done(folder, tmp_path):
    out = tmp_path / 'out'
    assert run_script('nuclei_predict', '--data', folder, '--out', out, '--figures', 'none')[0] == 0
    assert not (out / 'rois').exists()
    code, stdout, err = run_script('nuclei_predict', '--data', folder, '--out', out, '--figures', 'none', '--export', 'geojson')
    assert code == 0 and '0 images predicted, 3 already done' in stdout, (stdout, err)
    assert sorted(p.stem for p in (out / 'geojson').iterdir()) == sorted(s.id for s in list_samples(folder))


def test_unknown_export_is_one_line(folder, tmp_path):
    assert_one_line_error(run_script('nuclei_predict', '--data', folder, '--out', tmp_path, '--export', 'rois,svg'), 'nuclei_predict', '--export', 'svg')
