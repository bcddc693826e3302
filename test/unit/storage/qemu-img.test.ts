// The pure parsers of the qemu-img adapter: info JSON (backing, data file, encryption) and -p progress lines.
import { describe, expect, it } from 'vitest';
import { isAppError } from '../../../daemon/lib/errors.js';
import { parseProgress, parseQemuImgInfo } from '../../../daemon/storage/qemu-img.js';

describe('parseQemuImgInfo', () => {
  it('reads format, sizes, backing file and format', () => {
    const info = parseQemuImgInfo(
      JSON.stringify({ format: 'qcow2', 'virtual-size': 1048576, 'actual-size': 200704, 'backing-filename': 'b.raw', 'full-backing-filename': '/r/b.raw', 'backing-filename-format': 'raw', 'format-specific': { type: 'qcow2', data: { compat: '1.1' } } }),
    );
    expect(info).toEqual({ format: 'qcow2', virtualSize: 1048576, actualSize: 200704, encrypted: false, backingFilename: 'b.raw', fullBackingFilename: '/r/b.raw', backingFormat: 'raw', dataFile: undefined });
  });

  it('sees external data files and encryption', () => {
    const data = parseQemuImgInfo(JSON.stringify({ format: 'qcow2', 'virtual-size': 1, 'format-specific': { type: 'qcow2', data: { 'data-file': '/x' } } }));
    expect(data.dataFile).toBe('/x');
    expect(parseQemuImgInfo(JSON.stringify({ format: 'qcow2', 'virtual-size': 1, encrypted: true })).encrypted).toBe(true);
    expect(parseQemuImgInfo(JSON.stringify({ format: 'qcow2', 'virtual-size': 1, 'format-specific': { type: 'qcow2', data: { encrypt: { format: 'luks' } } } })).encrypted).toBe(true);
  });

  it.each(['not json', '{}', '{"format":"raw"}', '{"virtual-size":1}'])('refuses %j as IMAGE_INVALID', (text) => {
    let err: unknown;
    try {
      parseQemuImgInfo(text);
    } catch (e) {
      err = e;
    }
    expect(isAppError(err, 'IMAGE_INVALID')).toBe(true);
  });
});

describe('parseProgress', () => {
  it('returns the last percentage in a chunk', () => {
    expect(parseProgress('    (0.00/100%)\r    (12.50/100%)\r')).toBe(12.5);
    expect(parseProgress('    (100.00/100%)\n')).toBe(100);
    expect(parseProgress('nothing')).toBeUndefined();
  });
});
