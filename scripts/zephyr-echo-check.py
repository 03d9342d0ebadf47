#!/usr/bin/env python3
"""Checks the Zephyr application's packet UART: sends 0x00-delimited frames and
expects each one back unchanged (the echo pump of zephyr-app/src/pump.rs).

  zephyr-echo-check.py tcp PORT     # qemu: -serial tcp:127.0.0.1:PORT,server=on,wait=off
  zephyr-echo-check.py pty /dev/pts/N   # native_sim: the "uart_1 connected to pseudotty" line
"""
import os
import select
import socket
import sys
import time

FRAMES = [bytes([0x05, 0x11, 0x22, 0x33, 0x44]), bytes(range(1, 60)), b"\x02\xab"]


def run(read, write):
    passed = 0
    for frame in FRAMES:
        want = b"\x00" + frame + b"\x00"
        write(want)
        got = b""
        start = time.time()
        while len(got) < len(want) and time.time() - start < 5:
            got += read()
        ok = got == want
        passed += ok
        print("frame of %d bytes: %s" % (len(frame), "echoed" if ok else "got %r" % got))
    print("%d passed, %d failed" % (passed, len(FRAMES) - passed))
    return passed == len(FRAMES)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("tcp", "pty"):
        sys.exit(__doc__)
    if sys.argv[1] == "tcp":
        sock = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
        sock.settimeout(0.2)

        def read():
            try:
                return sock.recv(256)
            except socket.timeout:
                return b""

        return run(read, sock.sendall)
    import tty

    fd = os.open(sys.argv[2], os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)

    def read():
        ready, _, _ = select.select([fd], [], [], 0.2)
        return os.read(fd, 256) if ready else b""

    return run(read, lambda data: os.write(fd, data))


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
