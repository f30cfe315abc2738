#!/usr/bin/env python3
"""check-macho-codesig.py FILE: verifies the page hashes of a 64-bit Mach-O file's code signature.

Apple Silicon refuses to load unsigned (or wrongly signed) code; zig's linker signs arm64 output ad hoc. This
recomputes every page hash of the CodeDirectory and compares it with the stored one, which is what macOS checks
for an ad-hoc signature. Exits 0 when valid, else prints why and exits 1.
"""
import hashlib
import struct
import sys


def check(path):
    d = open(path, 'rb').read()
    if struct.unpack_from('<I', d)[0] != 0xFEEDFACF:
        return 'not a 64-bit little-endian Mach-O file'
    off, sig = 32, None
    for _ in range(struct.unpack_from('<I', d, 16)[0]):
        cmd, size = struct.unpack_from('<II', d, off)
        if cmd == 0x1D:  # LC_CODE_SIGNATURE: dataoff, datasize
            sig = struct.unpack_from('<II', d, off + 8)
        off += size
    if not sig:
        return 'no LC_CODE_SIGNATURE'
    blob = d[sig[0]:sig[0] + sig[1]]
    if struct.unpack_from('>I', blob)[0] != 0xFADE0CC0:  # embedded signature superblob
        return 'no embedded signature superblob'
    for i in range(struct.unpack_from('>I', blob, 8)[0]):
        _, blob_off = struct.unpack_from('>II', blob, 12 + 8 * i)
        if struct.unpack_from('>I', blob, blob_off)[0] != 0xFADE0C02:  # CodeDirectory
            continue
        cd = blob[blob_off:]
        hash_off, _, _, n_pages, limit, hash_size, hash_type, _, page_log = struct.unpack_from('>IIIIIBBBB', cd, 16)
        if limit != sig[0]:
            return f'code limit {limit} is not the signature offset {sig[0]}'
        page = 1 << page_log
        algo = hashlib.sha256 if hash_type == 2 else hashlib.sha1
        for p in range(n_pages):
            want = cd[hash_off + p * hash_size:hash_off + (p + 1) * hash_size]
            if algo(d[p * page:min((p + 1) * page, limit)]).digest()[:hash_size] != want:
                return f'page {p} hash mismatch'
        return None
    return 'no CodeDirectory'


if __name__ == '__main__':
    err = check(sys.argv[1])
    if err:
        print(f'{sys.argv[1]}: {err}')
        sys.exit(1)
    print(f'{sys.argv[1]}: code signature valid')
