#!/usr/bin/env python3
"""Boot the fixture guest under QEMU TCG, wait for the PKRAM save, dump memory over QMP.

Stdlib only. Writes into --out:
  <name>.console.log   ttyS0 (kernel console + init's PKRAM* lines)
  <name>.ttyS1.log     ttyS1 (base64 gzip of /proc/kallsyms when --export)
  <name>.raw           QMP pmemsave of all guest RAM (physical address = file offset)
  <name>.elf           QMP dump-guest-memory (ELF core, paging off)
  <name>.timing.json   seconds spent booting, waiting, dumping

The guest is paused (QMP stop) before both dumps, so raw and ELF hold the same state.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time


class QMP:
    def __init__(self, path, timeout=60):
        deadline = time.time() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        self.buf = b""
        self._read()                        # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("QMP closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._read()
            if "event" in reply:
                continue
            if "error" in reply:
                raise RuntimeError(f"QMP {name}: {reply['error']}")
            return reply.get("return")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--append", required=True)
    ap.add_argument("--mem-mb", type=int, default=128)
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--no-elf", action="store_true")
    args = ap.parse_args()

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    console = os.path.join(out, f"{args.name}.console.log")
    ttys1 = os.path.join(out, f"{args.name}.ttyS1.log")
    raw = os.path.join(out, f"{args.name}.raw")
    elf = os.path.join(out, f"{args.name}.elf")
    sock = os.path.join(out, f"{args.name}.qmp")
    for p in (console, ttys1, raw, elf, sock):
        if os.path.exists(p):
            os.unlink(p)

    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-m", f"{args.mem_mb}M", "-smp", "1",
           "-nographic", "-no-reboot", "-vga", "none", "-nic", "none",
           "-kernel", args.kernel, "-initrd", args.initrd, "-append", args.append,
           "-serial", f"file:{console}", "-serial", f"file:{ttys1}",
           "-monitor", "none", "-qmp", f"unix:{sock},server=on,wait=off"]
    t0 = time.time()
    qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    timing = {}
    try:
        qmp = QMP(sock)
        state = None
        while time.time() - t0 < args.timeout:
            if qemu.poll() is not None:
                raise RuntimeError(f"qemu exited with {qemu.returncode}")
            try:
                with open(console, "rb") as fh:
                    text = fh.read()
            except FileNotFoundError:
                text = b""
            if b"PKRAMEXPORTED" in text and "exported" not in timing:
                timing["exported"] = round(time.time() - t0, 2)
            if b"PKRAM_READY" in text and b'PKRAMGT {"t":"done"}' in text:
                state = "ready"
                break
            if b"PKRAM_FAIL" in text or b'"t":"error"' in text or b"Kernel panic" in text:
                state = "fail"
                break
            time.sleep(0.25)
        timing["boot_to_ready"] = round(time.time() - t0, 2)
        if state != "ready":
            raise RuntimeError(f"guest did not get ready ({state or 'timeout'}); see {console}")
        time.sleep(0.5)     # let the console drain
        qmp.cmd("stop")
        t1 = time.time()
        qmp.cmd("pmemsave", val=0, size=args.mem_mb << 20, filename=raw)
        timing["pmemsave"] = round(time.time() - t1, 2)
        if not args.no_elf:
            t1 = time.time()
            qmp.cmd("dump-guest-memory", paging=False, protocol=f"file:{elf}")
            timing["dump_guest_memory"] = round(time.time() - t1, 2)
        try:
            qmp.cmd("quit")
        except (EOFError, OSError):
            pass
        qemu.wait(timeout=30)
    finally:
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
        if os.path.exists(sock):
            os.unlink(sock)
    timing["total"] = round(time.time() - t0, 2)
    with open(os.path.join(out, f"{args.name}.timing.json"), "w") as fh:
        json.dump(timing, fh, indent=1)
    print(json.dumps({args.name: timing}))


if __name__ == "__main__":
    sys.exit(main())
