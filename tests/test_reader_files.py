"The reader on odd but legal microscope files: doubled axis letters, several positions, multi-file OME-TIFF, non-square pixels, NGFF scales, RGBA masks."
import uuid

import cv2
import numpy as np
import pytest
import tifffile

from nuclei_unet.core import NucleiError
from nuclei_unet.data import masks_to_labels, read_raw


def test_size_one_axis_is_dropped_by_place_not_letter(tmp_path):
    planes = np.stack([np.full((1, 40, 50), 100 * (k + 1), np.uint16) for k in range(5)])   # (5, 1, Y, X): tifffile says QQYX
    tifffile.imwrite(tmp_path / 'qq.tif', planes)
    for lazy in (False, True):
        assert np.asarray(read_raw(tmp_path / 'qq.tif', z='max', lazy=lazy).pixels).max() == 500
        assert np.asarray(read_raw(tmp_path / 'qq.tif', z=3, lazy=lazy).pixels).max() == 300


def test_positions_of_one_ome_tiff_are_refused_not_cut(tmp_path):
    with tifffile.TiffWriter(tmp_path / 'plate.ome.tif', ome=True) as tw:
        for k in range(3): tw.write(np.full((40, 50), k, np.uint16), metadata={'axes': 'YX', 'Name': f'Position{k + 1}'})
    with pytest.raises(NucleiError, match='3 images of one size in one OME-TIFF'): read_raw(tmp_path / 'plate.ome.tif')


def test_multi_file_ome_tiff_reads_every_plane(tmp_path):
    ids = [f'urn:uuid:{uuid.uuid4()}' for _ in 'ab']
    def ome(me): return (f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" UUID="{me}">'
                         '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" SizeX="64" SizeY="48" SizeC="1" SizeZ="2" SizeT="1">'
                         '<Channel ID="Channel:0:0" SamplesPerPixel="1"/>'
                         + ''.join(f'<TiffData FirstZ="{z}" IFD="0" PlaneCount="1"><UUID FileName="{n}.ome.tif">{u}</UUID></TiffData>' for z, (n, u) in enumerate(zip('ab', ids)))
                         + '</Pixels></Image></OME>')
    tifffile.imwrite(tmp_path / 'a.ome.tif', np.full((48, 64), 100, np.uint16), description=ome(ids[0]), metadata=None)
    tifffile.imwrite(tmp_path / 'b.ome.tif', np.full((48, 64), 900, np.uint16), description=ome(ids[1]) + ' ' * 20000, metadata=None)   # its plane lies past a.ome.tif's end
    assert read_raw(tmp_path / 'a.ome.tif', z='max').pixels.max() == 900


@pytest.mark.parametrize('y, expected', [(0.2, 0.2), (0.201, 0.2), (0.4, None)])
def test_pixels_that_are_not_square_give_no_pixel_size(tmp_path, y, expected):
    tifffile.imwrite(tmp_path / 'p.ome.tif', np.zeros((20, 30), np.uint16), metadata={'axes': 'YX', 'PhysicalSizeX': 0.2, 'PhysicalSizeY': y})
    assert read_raw(tmp_path / 'p.ome.tif').pixel_size == expected
    tifffile.imwrite(tmp_path / 'ij.tif', np.zeros((20, 30), np.uint16), imagej=True, resolution=(1 / 0.2, 1 / y), metadata={'unit': 'um'})
    assert read_raw(tmp_path / 'ij.tif').pixel_size == pytest.approx(expected) if expected else read_raw(tmp_path / 'ij.tif').pixel_size is None


def test_ngff_multiscales_scale_applies_after_the_level_scale(tmp_path):
    zarr = pytest.importorskip('zarr')
    g = zarr.open_group(str(tmp_path / 'i.ome.zarr'), mode='w', zarr_format=2)
    g.create_array('0', shape=(40, 50), dtype='uint16', chunks=(40, 50))[:] = 7
    axes = [dict(name=a, type='space', unit='micrometer') for a in 'yx']
    g.attrs['multiscales'] = [dict(version='0.4', axes=axes, coordinateTransformations=[dict(type='scale', scale=[0.5, 0.5])],
                                   datasets=[dict(path='0', coordinateTransformations=[dict(type='scale', scale=[0.65, 0.65])])])]
    assert read_raw(tmp_path / 'i.ome.zarr').pixel_size == pytest.approx(0.325)


def test_16_bit_rgb_planes_beside_channels_are_one_line(tmp_path):
    tifffile.imwrite(tmp_path / 'cs.ome.tif', np.zeros((2, 40, 50, 3), np.uint16), photometric='rgb', metadata={'axes': 'CYXS'})
    with pytest.raises(NucleiError, match='channels of colour'): read_raw(tmp_path / 'cs.ome.tif', channel=1)


def test_opaque_rgba_masks_are_read_by_their_colours(tmp_path):
    paths = []
    for k, (y, x) in enumerate([(5, 5), (20, 25)]):
        m = np.zeros((40, 40, 4), np.uint8); m[..., 3] = 255; m[y:y + 5, x:x + 5, :3] = 255   # opaque everywhere, white nucleus
        cv2.imwrite(str(tmp_path / f'm{k}.png'), m); paths.append(tmp_path / f'm{k}.png')
    labels = masks_to_labels(paths, (40, 40))
    assert labels.max() == 2 and np.bincount(labels.ravel()).tolist() == [1550, 25, 25]
    for colour in (0, 255):                                                         # one colour everywhere, the nucleus only in alpha
        m = np.zeros((40, 40, 4), np.uint8); m[..., 2] = colour; m[5:10, 5:10, 3] = 255
        cv2.imwrite(str(tmp_path / 'a.png'), m)
        assert (masks_to_labels([tmp_path / 'a.png'], (40, 40)) > 0).sum() == 25
    m = np.zeros((40, 40, 4), np.uint8); m[..., 3] = 255                            # opaque black: an empty mask
    cv2.imwrite(str(tmp_path / 'e.png'), m)
    assert masks_to_labels([tmp_path / 'e.png'], (40, 40)).max() == 0


def test_channels_named_alike_are_numbered_and_chosen_by_those_names(tmp_path):
    pixels = np.stack([np.full((20, 30), v, np.uint16) for v in (100, 7, 55)])
    tifffile.imwrite(tmp_path / 'dup.ome.tif', pixels, ome=True, metadata={'axes': 'CYX', 'Channel': {'Name': ['DAPI', 'DAPI', 'GFP']}})
    raw = read_raw(tmp_path / 'dup.ome.tif', channel='DAPI_2')
    assert raw.channels == ('DAPI', 'DAPI_2', 'GFP') and raw.nuclear == 1 and raw.pixels[0, 0, raw.nuclear] == 7
    assert read_raw(tmp_path / 'dup.ome.tif', channel='DAPI').nuclear == 0


def test_greek_mu_is_a_micrometre(tmp_path):
    tifffile.imwrite(tmp_path / 'mu.ome.tif', np.zeros((20, 30), np.uint16), metadata={'axes': 'YX', 'PhysicalSizeX': 0.5, 'PhysicalSizeXUnit': '\u03bcm'})
    assert read_raw(tmp_path / 'mu.ome.tif').pixel_size == 0.5


def test_float_label_images_with_whole_ids_are_read(tmp_path):
    from nuclei_unet.data import read_labels
    labels = np.zeros((20, 30), np.float32); labels[2:6, 2:6] = 3; labels[10:14, 10:20] = 70000
    tifffile.imwrite(tmp_path / 'f.tif', labels)                                    # as Fiji saves a 32-bit label image
    assert np.unique(read_labels(tmp_path / 'f.tif', keep_ids=True)).tolist() == [0, 3, 70000]
    tifffile.imwrite(tmp_path / 'half.tif', labels + 0.5)
    with pytest.raises(NucleiError, match='fractional'): read_labels(tmp_path / 'half.tif')
