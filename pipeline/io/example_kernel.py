"""The compiled TFRecord scanner's code (numba), imported only when exampleparse.py loads it.

Its functions live at module level so numba's on-disk cache finds them again in the next
process (functions made inside a function are new objects each time, and always recompile).
Each helper returns a position of -1 when what it reads is not in the shape the scanner decides.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["scan"]

jit = numba.njit(cache=True, nogil=True, boundscheck=False)


@jit
def varint(buf, p, end):
    """(value as uint64, position after it); position -1 for a bad or non-canonical varint."""
    value = np.uint64(0)
    for i in range(10):
        if p >= end:
            return value, -1
        b = buf[p]
        p += 1
        if i == 9 and b > 1:
            return value, -1
        value |= np.uint64(b & 0x7F) << np.uint64(7 * i)
        if b < 0x80:
            if b == 0 and i > 0:
                return value, -1
            return value, p
    return value, -1


@jit
def length(buf, p, end):
    """A length-delimited field's (start, stop) from its length varint at p; start -1 when it overruns `end`."""
    n, p = varint(buf, p, end)
    if p < 0 or n > np.uint64(end - p):
        return -1, -1
    return p, p + np.int64(n)


@jit
def list_ok(buf, p, end):
    """Whether buf[p:end] is one Feature: empty, or one BytesList, FloatList or Int64List, well framed."""
    if p == end:
        return True
    tag = buf[p]
    start, stop = length(buf, p + 1, end)
    if start < 0 or stop != end or (tag != 0x0A and tag != 0x12 and tag != 0x1A):
        return False
    p = start
    while p < stop:
        field = buf[p]
        if tag == 0x0A and field == 0x0A:  # BytesList: repeated bytes
            s, p = length(buf, p + 1, stop)
            if s < 0:
                return False
        elif tag == 0x12 and field == 0x0A:  # FloatList, packed
            s, e = length(buf, p + 1, stop)
            if s < 0 or (e - s) % 4:
                return False
            p = e
        elif tag == 0x12 and field == 0x0D:  # FloatList, one fixed32
            if stop - p < 5:
                return False
            p += 5
        elif tag == 0x1A and field == 0x0A:  # Int64List, packed
            s, e = length(buf, p + 1, stop)
            if s < 0:
                return False
            while s < e:
                _, s = varint(buf, s, e)
                if s < 0:
                    return False
            p = e
        elif tag == 0x1A and field == 0x08:  # Int64List, one varint
            _, p = varint(buf, p + 1, stop)
            if p < 0:
                return False
        else:
            return False
    return True


@jit
def one_int64(buf, p, end):
    """The int64 of a Feature holding exactly one (packed or not) in buf[p:end]; ok False otherwise."""
    if p >= end or buf[p] != 0x1A:
        return np.uint64(0), False
    start, stop = length(buf, p + 1, end)
    if start < 0 or stop != end or start >= stop:
        return np.uint64(0), False
    if buf[start] == 0x08:
        value, after = varint(buf, start + 1, stop)
        return value, after == stop
    if buf[start] == 0x0A:
        s, e = length(buf, start + 1, stop)
        if s < 0 or e != stop:
            return np.uint64(0), False
        value, after = varint(buf, s, e)
        return value, after == e
    return np.uint64(0), False


@jit
def one_image(buf, p, end):
    """Where the 784 bytes of a Feature holding exactly one 784-byte value start; -1 otherwise."""
    if p >= end or buf[p] != 0x0A:
        return -1
    start, stop = length(buf, p + 1, end)
    if start < 0 or stop != end or start >= stop or buf[start] != 0x0A:
        return -1
    s, e = length(buf, start + 1, stop)
    if s < 0 or e != stop or e - s != 784:
        return -1
    return s


@jit
def scan(buf, starts, lengths, keys, pixels, ok):
    for r in range(len(starts)):
        ok[r] = False
        p = starts[r]
        end = p + lengths[r]
        if lengths[r] > 65536 or p >= end or buf[p] != 0x0A:
            continue
        p, features_end = length(buf, p + 1, end)
        if p < 0 or features_end != end:
            continue
        image_at = -1
        have_key = False
        good = True
        while good and p < end:
            if buf[p] != 0x0A:
                good = False
                break
            entry, entry_end = length(buf, p + 1, end)
            if entry < 0 or entry >= entry_end or buf[entry] != 0x0A:
                good = False
                break
            name, name_end = length(buf, entry + 1, entry_end)
            if name < 0 or name_end >= entry_end or buf[name_end] != 0x12:
                good = False
                break
            value, value_end = length(buf, name_end + 1, entry_end)
            if value < 0 or value_end != entry_end:
                good = False
                break
            size = name_end - name
            if size == 3 and buf[name] == 107 and buf[name + 1] == 101 and buf[name + 2] == 121:  # key
                key, found = one_int64(buf, value, value_end)
                if have_key or not found:
                    good = False
                    break
                keys[r] = key
                have_key = True
            elif (
                size == 5
                and buf[name] == 105
                and buf[name + 1] == 109
                and buf[name + 2] == 97
                and (buf[name + 3] == 103 and buf[name + 4] == 101)
            ):  # image
                if image_at >= 0:
                    good = False
                    break
                image_at = one_image(buf, value, value_end)
                if image_at < 0:
                    good = False
                    break
            else:
                for i in range(name, name_end):
                    if buf[i] < 32 or buf[i] > 126:
                        good = False
                        break
                if not good or not list_ok(buf, value, value_end):
                    good = False
                    break
            p = entry_end
        if good and have_key and image_at >= 0:
            pixels[r, :] = buf[image_at : image_at + 784]
            ok[r] = True
