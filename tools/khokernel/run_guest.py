#!/usr/bin/env python3
"""Boot the KHO/LUO guest under QEMU TCG and dump guest RAM at moments A and B over QMP.

Stdlib only; the QMP client is tools/realkernel/run_guest.py's. Writes into --out:
  <name>.console.log        ttyS0 of both boots (kernel console + LUOGT lines)
  <name>-A.raw [-A.elf]     moment A: first kernel, files preserved, before kexec_file_load
  <name>-B.raw [-B.elf]     moment B: second kernel (after the kexec), before userspace retrieves anything
  <name>.timing.json        seconds: boot to READY-A, dumps, kexec to READY-B, retrieval

Handshake: the guest prints "LUOGT READY-A" (or -B) on ttyS0 and then blocks reading
ttyS1 (a QEMU unix-socket chardev). The host pauses the VM (QMP stop), dumps, resumes
(cont) and writes "GO" to ttyS1.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "realkernel"))
from run_guest import QMP  # noqa: E402  (tools/realkernel/run_guest.py)


def wait_for(console, marker, qemu, t0, timeout, fail_markers=(b"Kernel panic", b"LUOGT ERROR")):
    while time.time() - t0 < timeout:
        if qemu.poll() is not None:
            raise RuntimeError(f"qemu exited with {qemu.returncode} while waiting for {marker!r}")
        try:
            with open(console, "rb") as fh:
                text = fh.read()
        except FileNotFoundError:
            text = b""
        if marker in text:
            return
        for f in fail_markers:
            if f in text:
                raise RuntimeError(f"guest failed ({f!r}) while waiting for {marker!r}; see {console}")
        time.sleep(0.2)
    raise RuntimeError(f"timeout waiting for {marker!r}; see {console}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--append", required=True)
    ap.add_argument("--mem-mb", type=int, default=256)
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--elf", default="", help="moments that also get an ELF dump, e.g. 'B' or 'AB'")
    args = ap.parse_args()

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    console = os.path.join(out, f"{args.name}.console.log")
    sock = os.path.join(out, f"{args.name}.qmp")
    ctl = os.path.join(out, f"{args.name}.ctl")
    for p in [console, sock, ctl] + [os.path.join(out, f"{args.name}-{m}.{e}") for m in "AB" for e in ("raw", "elf")]:
        if os.path.exists(p):
            os.unlink(p)

    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-m", f"{args.mem_mb}M", "-smp", "1",
           "-nographic", "-no-reboot", "-vga", "none", "-nic", "none",
           "-kernel", args.kernel, "-initrd", args.initrd, "-append", args.append,
           "-serial", f"file:{console}",
           "-chardev", f"socket,id=ctl,path={ctl},server=on,wait=off", "-serial", "chardev:ctl",
           "-monitor", "none", "-qmp", f"unix:{sock},server=on,wait=off"]
    t0 = time.time()
    qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    timing = {}
    ctl_sock = None
    try:
        qmp = QMP(sock)
        deadline = time.time() + 30
        while True:
            try:
                ctl_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                ctl_sock.connect(ctl)
                break
            except OSError:
                ctl_sock.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        last = t0
        for moment in "AB":
            wait_for(console, f"LUOGT READY-{moment}".encode(), qemu, t0, args.timeout)
            timing[f"to_ready_{moment}"] = round(time.time() - last, 2)
            time.sleep(0.5)                      # let the console drain
            qmp.cmd("stop")
            t1 = time.time()
            raw = os.path.join(out, f"{args.name}-{moment}.raw")
            qmp.cmd("pmemsave", val=0, size=args.mem_mb << 20, filename=raw)
            timing[f"pmemsave_{moment}"] = round(time.time() - t1, 2)
            if moment in args.elf:
                t1 = time.time()
                qmp.cmd("dump-guest-memory", paging=False,
                        protocol=f"file:{os.path.join(out, f'{args.name}-{moment}.elf')}")
                timing[f"dump_guest_memory_{moment}"] = round(time.time() - t1, 2)
            qmp.cmd("cont")
            ctl_sock.sendall(b"GO\n")
            last = time.time()
        wait_for(console, b"LUOGT DONE", qemu, t0, args.timeout)
        timing["retrieve"] = round(time.time() - last, 2)
        try:
            qmp.cmd("quit")
        except (EOFError, OSError):
            pass
        qemu.wait(timeout=30)
    finally:
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
        for p in (sock, ctl):
            if os.path.exists(p):
                os.unlink(p)
    timing["total"] = round(time.time() - t0, 2)
    with open(os.path.join(out, f"{args.name}.timing.json"), "w") as fh:
        json.dump(timing, fh, indent=1)
    print(json.dumps({args.name: timing}))


if __name__ == "__main__":
    sys.exit(main())
