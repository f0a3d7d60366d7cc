"""Sequential-read baseline for the scan benchmark: read every data segment of the image
file (SEEK_DATA/SEEK_HOLE; holes are zeros and need no reading) in 16 MiB preads, discard."""

import os
import sys

CHUNK = 16 << 20


def main(image: str) -> None:
    fd = os.open(image, os.O_RDONLY)
    size = os.fstat(fd).st_size
    pos = total = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            break
        end = os.lseek(fd, start, os.SEEK_HOLE)
        while start < end:
            n = len(os.pread(fd, min(CHUNK, end - start), start))
            if not n:
                break
            start += n
            total += n
        pos = end
    os.close(fd)
    print(total)


if __name__ == "__main__":
    main(sys.argv[1])
