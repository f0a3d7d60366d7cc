/*
 * luo_guest.c - ground-truth generator for KHO/LUO memory-image fixtures.
 *
 * Build (static, against the uapi header of the kernel tree it runs on):
 *   gcc -O2 -static -I$SRC/include/uapi -o luo_guest luo_guest.c
 *
 * Stage A (first boot; "luo_guest a KERNEL INITRD CMDLINE"):
 *   creates two LUO sessions and several memfds filled with a deterministic
 *   pattern, preserves every memfd with a distinct token, prints the ground
 *   truth ("LUOGT ..." lines) before and after the preserve ioctl, runs
 *   /luogt_info.sh A, prints "LUOGT READY-A", waits for "GO" on /dev/ttyS1
 *   (the host dumps memory meanwhile), then kexec_file_load()s KERNEL+INITRD
 *   with CMDLINE and reboot(LINUX_REBOOT_CMD_KEXEC).
 * Stage B (second boot; "luo_guest b"):
 *   prints "LUOGT READY-B" before touching /dev/liveupdate, waits for "GO",
 *   then retrieves both sessions and every fd, prints the hashes and PFNs of
 *   what came back ("LUOGT RETRIEVED ..."), and "LUOGT DONE".
 *
 * Pattern (also in tools/khokernel/luogt_pattern.py): page p of file f is 64
 * lines of 64 bytes; line l is
 *   sprintf("LUOGT f%02d p%08x l%02d ", f, p, l)  (24 bytes)
 * padded with the letter 'A'+f up to 63 bytes, then '\n'.
 * Only the byte ranges listed in the file's "data" extents are written; the
 * rest of the file (holes, the tail of the last page) reads as zero.
 *
 * Output line formats (one fact per line, space separated key=value):
 *   LUOGT FILE stage=.. session=S token=0x.. fid=N name=.. size=N pos=N seals=0x.. sha256=..
 *   LUOGT EXTENT fid=N start=N end=N                  (written byte ranges)
 *   LUOGT RUN phase=P fid=N idx=I n=K pfn=0x..       (K pages idx..idx+K-1 at pfn..pfn+K-1)
 *   LUOGT HOLE phase=P fid=N idx=I n=K                (not present in pagemap)
 *   LUOGT FOLIO phase=P fid=N idx=I pfn=0x.. pages=K (a compound page, from kpageflags)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/liveupdate.h>
#include <linux/reboot.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif
#ifndef MADV_HUGEPAGE
#define MADV_HUGEPAGE 14
#endif

#define PG 4096UL

/* ------------------------------------------------------------ SHA-256 */
typedef struct { uint32_t h[8]; uint64_t len; uint8_t buf[64]; size_t n; } sha256_ctx;
static const uint32_t K256[64] = {
0x428a2f98,0x71374491,0xb5c0fbcf,0xe9b5dba5,0x3956c25b,0x59f111f1,0x923f82a4,0xab1c5ed5,
0xd807aa98,0x12835b01,0x243185be,0x550c7dc3,0x72be5d74,0x80deb1fe,0x9bdc06a7,0xc19bf174,
0xe49b69c1,0xefbe4786,0x0fc19dc6,0x240ca1cc,0x2de92c6f,0x4a7484aa,0x5cb0a9dc,0x76f988da,
0x983e5152,0xa831c66d,0xb00327c8,0xbf597fc7,0xc6e00bf3,0xd5a79147,0x06ca6351,0x14292967,
0x27b70a85,0x2e1b2138,0x4d2c6dfc,0x53380d13,0x650a7354,0x766a0abb,0x81c2c92e,0x92722c85,
0xa2bfe8a1,0xa81a664b,0xc24b8b70,0xc76c51a3,0xd192e819,0xd6990624,0xf40e3585,0x106aa070,
0x19a4c116,0x1e376c08,0x2748774c,0x34b0bcb5,0x391c0cb3,0x4ed8aa4a,0x5b9cca4f,0x682e6ff3,
0x748f82ee,0x78a5636f,0x84c87814,0x8cc70208,0x90befffa,0xa4506ceb,0xbef9a3f7,0xc67178f2};
#define ROR(x,n) (((x)>>(n))|((x)<<(32-(n))))
static void sha_block(sha256_ctx *c, const uint8_t *p)
{
	uint32_t w[64], a, b, cc, d, e, f, g, h, t1, t2; int i;
	for (i = 0; i < 16; i++) w[i] = (uint32_t)p[4*i]<<24 | p[4*i+1]<<16 | p[4*i+2]<<8 | p[4*i+3];
	for (i = 16; i < 64; i++) {
		uint32_t s0 = ROR(w[i-15],7) ^ ROR(w[i-15],18) ^ (w[i-15]>>3);
		uint32_t s1 = ROR(w[i-2],17) ^ ROR(w[i-2],19) ^ (w[i-2]>>10);
		w[i] = w[i-16] + s0 + w[i-7] + s1;
	}
	a=c->h[0]; b=c->h[1]; cc=c->h[2]; d=c->h[3]; e=c->h[4]; f=c->h[5]; g=c->h[6]; h=c->h[7];
	for (i = 0; i < 64; i++) {
		t1 = h + (ROR(e,6)^ROR(e,11)^ROR(e,25)) + ((e&f)^(~e&g)) + K256[i] + w[i];
		t2 = (ROR(a,2)^ROR(a,13)^ROR(a,22)) + ((a&b)^(a&cc)^(b&cc));
		h=g; g=f; f=e; e=d+t1; d=cc; cc=b; b=a; a=t1+t2;
	}
	c->h[0]+=a; c->h[1]+=b; c->h[2]+=cc; c->h[3]+=d; c->h[4]+=e; c->h[5]+=f; c->h[6]+=g; c->h[7]+=h;
}
static void sha_init(sha256_ctx *c)
{
	static const uint32_t iv[8] = {0x6a09e667,0xbb67ae85,0x3c6ef372,0xa54ff53a,
		0x510e527f,0x9b05688c,0x1f83d9ab,0x5be0cd19};
	memcpy(c->h, iv, sizeof(iv)); c->len = 0; c->n = 0;
}
static void sha_update(sha256_ctx *c, const uint8_t *p, size_t n)
{
	c->len += n;
	while (n) {
		size_t k = 64 - c->n; if (k > n) k = n;
		memcpy(c->buf + c->n, p, k); c->n += k; p += k; n -= k;
		if (c->n == 64) { sha_block(c, c->buf); c->n = 0; }
	}
}
static void sha_final(sha256_ctx *c, char hex[65])
{
	uint64_t bits = c->len * 8; uint8_t pad = 0x80, z = 0, lb[8]; int i;
	sha_update(c, &pad, 1);
	while (c->n != 56) sha_update(c, &z, 1);
	for (i = 0; i < 8; i++) lb[i] = bits >> (56 - 8*i);
	sha_update(c, lb, 8);
	for (i = 0; i < 8; i++) sprintf(hex + 8*i, "%08x", c->h[i]);
}

/* ------------------------------------------------------------ helpers */
static void out(const char *fmt, ...)
{
	char line[1024]; va_list ap; int n;
	va_start(ap, fmt); n = vsnprintf(line, sizeof(line) - 1, fmt, ap); va_end(ap);
	line[n++] = '\n';
	if (write(1, line, n) < 0) {}
}
static void die(const char *what)
{
	out("LUOGT ERROR %s errno=%d (%s)", what, errno, strerror(errno));
	exit(1);
}

static void fill_page(uint8_t *p, int fid, unsigned long page)
{
	for (int l = 0; l < 64; l++) {
		char *s = (char *)p + 64 * l;
		int n = sprintf(s, "LUOGT f%02d p%08lx l%02d ", fid, page, l);
		memset(s + n, 'A' + fid, 63 - n);
		s[63] = '\n';
	}
}

struct extent { unsigned long start, end; };   /* byte range written */
struct spec {
	int fid; const char *name; int session; uint64_t token;
	unsigned long size; unsigned flags; int thp; int seals;
	int next; struct extent ext[3]; int use_mmap_write;
};

/* session 0 = "vm-guest-1", session 1 = "vm-guest-2" */
static const char *session_names[2] = { "vm-guest-1", "vm-guest-2" };
static struct spec specs[] = {
	{ 1, "page1",   0, 0x1001, 4096,        0, 0, 0, 1, {{0, 4096}}, 0 },
	{ 2, "odd37k",  0, 0x1002, 37 * 1024,   0, 0, 0, 1, {{0, 37 * 1024}}, 0 },
	{ 3, "holey3m", 0, 0x1003, 3 << 20,     0, 0, 0, 2, {{0, 64 * PG}, {700 * PG, 768 * PG}}, 0 },
	{ 4, "sealed64k", 0, 0x1004, 64 * 1024, MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL, 0,
	  F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE, 1, {{0, 64 * 1024}}, 0 },
	{ 5, "big17m",  1, 0x2005, 17 << 20,    0, 0, 0, 1, {{0, 17 << 20}}, 0 },
	{ 6, "thp4m",   1, 0x2006, 4 << 20,     0, 1, 0, 1, {{0, 4 << 20}}, 1 },
	{ 7, "empty",   1, 0x2007, 0,           0, 0, 0, 0, {{0, 0}}, 0 },
	{ 8, "tail5p",  1, 0x2008, 5 * PG + 123, 0, 0, 0, 2, {{0, PG}, {4 * PG, 5 * PG + 123}}, 0 },
};
#define NSPEC (int)(sizeof(specs) / sizeof(specs[0]))

static int pagemap_fd = -1, kpf_fd = -1;

static uint64_t pread64_at(int fd, uint64_t off)
{
	uint64_t v = 0;
	if (pread(fd, &v, 8, off) != 8) return 0;
	return v;
}

static void hash_fd(int fd, unsigned long size, char hex[65])
{
	static uint8_t buf[1 << 16]; sha256_ctx c; unsigned long off = 0;
	sha_init(&c);
	while (off < size) {
		size_t k = size - off > sizeof(buf) ? sizeof(buf) : size - off;
		ssize_t r = pread(fd, buf, k, off);
		if (r <= 0) die("pread");
		sha_update(&c, buf, r); off += r;
	}
	sha_final(&c, hex);
}

static int in_extent(const struct spec *s, unsigned long page)
{
	for (int i = 0; i < s->next; i++)
		if (page * PG < s->ext[i].end && (page + 1) * PG > s->ext[i].start) return 1;
	return 0;
}

/*
 * Print PFN runs for the file.  touch_all: fault every page of the file in
 * (read-only); otherwise only pages inside written extents are touched, so
 * holes stay holes.
 */
static void print_pages(const char *phase, int fid, int fd, unsigned long size,
			const struct spec *s, int touch_all)
{
	unsigned long npages = (size + PG - 1) / PG, i;
	if (!npages) { out("LUOGT NOPAGES phase=%s fid=%d", phase, fid); return; }
	volatile uint8_t *m = mmap(NULL, npages * PG, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) die("mmap ro");
	for (i = 0; i < npages; i++)
		if (touch_all || in_extent(s, i)) (void)m[i * PG];
	uint64_t *pfn = calloc(npages, 8), *kf = calloc(npages, 8);
	for (i = 0; i < npages; i++) {
		uint64_t e = pread64_at(pagemap_fd, ((unsigned long)m / PG + i) * 8);
		pfn[i] = (e >> 63) ? (e & ((1ULL << 55) - 1)) : 0;
		kf[i] = pfn[i] ? pread64_at(kpf_fd, pfn[i] * 8) : 0;
	}
	for (i = 0; i < npages;) {
		unsigned long j = i + 1;
		if (!pfn[i]) {
			while (j < npages && !pfn[j]) j++;
			out("LUOGT HOLE phase=%s fid=%d idx=%lu n=%lu", phase, fid, i, j - i);
		} else {
			while (j < npages && pfn[j] == pfn[i] + (j - i)) j++;
			out("LUOGT RUN phase=%s fid=%d idx=%lu n=%lu pfn=0x%lx", phase, fid, i, j - i, pfn[i]);
		}
		i = j;
	}
	/* compound pages: KPF_COMPOUND_HEAD=15, KPF_COMPOUND_TAIL=16, KPF_THP=22 */
	for (i = 0; i < npages; i++) {
		if (!pfn[i] || !(kf[i] & (1ULL << 15))) continue;
		unsigned long j = i + 1;
		while (j < npages && pfn[j] == pfn[i] + (j - i) && (kf[j] & (1ULL << 16))) j++;
		out("LUOGT FOLIO phase=%s fid=%d idx=%lu pfn=0x%lx pages=%lu kpageflags=0x%llx",
		    phase, fid, i, pfn[i], j - i, (unsigned long long)kf[i]);
	}
	free(pfn); free(kf);
	munmap((void *)m, npages * PG);
}

static void print_file(const char *stage, const struct spec *s, int fd)
{
	char hex[65]; struct stat st;
	if (fstat(fd, &st)) die("fstat");
	int seals = fcntl(fd, F_GET_SEALS);
	off_t pos = lseek(fd, 0, SEEK_CUR);
	hash_fd(fd, st.st_size, hex);
	out("LUOGT FILE stage=%s session=%s token=0x%llx fid=%d name=%s size=%lld pos=%lld seals=0x%x sha256=%s",
	    stage, session_names[s->session], (unsigned long long)s->token, s->fid, s->name,
	    (long long)st.st_size, (long long)pos, seals, hex);
}

static void wait_go(const char *tag)
{
	out("LUOGT READY-%s", tag);
	int fd = open("/dev/ttyS1", O_RDWR | O_NOCTTY);
	if (fd < 0) { out("LUOGT WARN no ttyS1 (%s), sleeping 20s", strerror(errno)); sleep(20); return; }
	struct termios t;
	if (!tcgetattr(fd, &t)) { cfmakeraw(&t); tcsetattr(fd, TCSANOW, &t); }
	char buf[64]; size_t have = 0;
	struct pollfd p = { fd, POLLIN, 0 };
	for (int waited = 0; waited < 600; ) {
		int r = poll(&p, 1, 1000);
		if (r == 0) { waited++; continue; }
		ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (n <= 0) continue;
		have += n; buf[have] = 0;
		if (strstr(buf, "GO")) { out("LUOGT GO-%s", tag); close(fd); return; }
		if (have > 32) have = 0;
	}
	out("LUOGT WARN no GO after 600s, continuing");
	close(fd);
}

static void run_script(const char *arg)
{
	pid_t pid = fork();
	if (pid == 0) { execl("/bin/sh", "sh", "/luogt_info.sh", arg, (char *)NULL); _exit(127); }
	int st; waitpid(pid, &st, 0);
}

static void write_pattern(struct spec *s, int fd)
{
	uint8_t page[PG];
	if (s->use_mmap_write) {
		uint8_t *m = mmap(NULL, s->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (m == MAP_FAILED) die("mmap rw");
		if (s->thp && madvise(m, s->size, MADV_HUGEPAGE)) out("LUOGT WARN madvise errno=%d", errno);
		for (int e = 0; e < s->next; e++)
			for (unsigned long p = s->ext[e].start / PG; p * PG < s->ext[e].end; p++) {
				fill_page(page, s->fid, p);
				unsigned long a = p * PG > s->ext[e].start ? p * PG : s->ext[e].start;
				unsigned long b = (p + 1) * PG < s->ext[e].end ? (p + 1) * PG : s->ext[e].end;
				memcpy(m + a, page + (a - p * PG), b - a);
			}
		munmap(m, s->size);
		return;
	}
	for (int e = 0; e < s->next; e++) {
		if (lseek(fd, s->ext[e].start, SEEK_SET) < 0) die("lseek");
		for (unsigned long p = s->ext[e].start / PG; p * PG < s->ext[e].end; p++) {
			fill_page(page, s->fid, p);
			unsigned long a = p * PG > s->ext[e].start ? p * PG : s->ext[e].start;
			unsigned long b = (p + 1) * PG < s->ext[e].end ? (p + 1) * PG : s->ext[e].end;
			if (write(fd, page + (a - p * PG), b - a) != (ssize_t)(b - a)) die("write");
		}
	}
}

static int stage_a(const char *kernel, const char *initrd, const char *cmdline)
{
	int dry = getenv("LUOGT_DRY_RUN") != NULL;   /* host self-test: no LUO, no kexec */
	int lu = dry ? -1 : open("/dev/liveupdate", O_RDWR);
	if (lu < 0 && !dry) die("open /dev/liveupdate");
	int sess[2] = { -1, -1 };
	for (int i = 0; i < 2 && !dry; i++) {
		struct liveupdate_ioctl_create_session cs = { .size = sizeof(cs) };
		strncpy((char *)cs.name, session_names[i], sizeof(cs.name) - 1);
		if (ioctl(lu, LIVEUPDATE_IOCTL_CREATE_SESSION, &cs)) die("CREATE_SESSION");
		sess[i] = cs.fd;
		out("LUOGT SESSION name=%s fd=%d", session_names[i], cs.fd);
	}
	int fds[NSPEC];
	for (int i = 0; i < NSPEC; i++) {
		struct spec *s = &specs[i];
		unsigned fl = s->flags ? s->flags : MFD_EXEC;
		fds[i] = memfd_create(s->name, fl);
		if (fds[i] < 0) die("memfd_create");
		if (s->size && ftruncate(fds[i], s->size)) die("ftruncate");
		write_pattern(s, fds[i]);
		if (s->seals && fcntl(fds[i], F_ADD_SEALS, s->seals)) die("F_ADD_SEALS");
		for (int e = 0; e < s->next; e++)
			out("LUOGT EXTENT fid=%d start=%lu end=%lu", s->fid, s->ext[e].start, s->ext[e].end);
		print_file("pre", s, fds[i]);
		print_pages("pre", s->fid, fds[i], s->size, s, 0);
	}
	for (int i = 0; i < NSPEC; i++) {
		struct spec *s = &specs[i];
		struct liveupdate_session_preserve_fd pf = { .size = sizeof(pf), .fd = fds[i], .token = s->token };
		if (dry) continue;
		if (ioctl(sess[s->session], LIVEUPDATE_SESSION_PRESERVE_FD, &pf)) {
			out("LUOGT PRESERVE-FAILED fid=%d errno=%d (%s)", s->fid, errno, strerror(errno));
			continue;
		}
		out("LUOGT PRESERVED fid=%d session=%s token=0x%llx", s->fid, session_names[s->session],
		    (unsigned long long)s->token);
	}
	/* Final truth: after all preserve calls (pinning may migrate pages). */
	for (int i = 0; i < NSPEC; i++) {
		print_file("post", &specs[i], fds[i]);
		print_pages("post", specs[i].fid, fds[i], specs[i].size, &specs[i], 1);
	}
	if (dry) { out("LUOGT DRY-RUN-END"); return 0; }
	run_script("A");
	wait_go("A");

	int kfd = open(kernel, O_RDONLY), ifd = open(initrd, O_RDONLY);
	if (kfd < 0 || ifd < 0) die("open kernel/initrd");
	out("LUOGT KEXEC-LOAD cmdline=\"%s\"", cmdline);
	if (syscall(SYS_kexec_file_load, kfd, ifd, strlen(cmdline) + 1, cmdline, 0UL))
		die("kexec_file_load");
	run_script("A2");
	out("LUOGT KEXEC-REBOOT");
	sync();
	reboot(LINUX_REBOOT_CMD_KEXEC);
	die("reboot(KEXEC) returned");
	return 1;
}

static int stage_b(void)
{
	wait_go("B");
	int lu = open("/dev/liveupdate", O_RDWR);
	if (lu < 0) die("open /dev/liveupdate");
	int sess[2];
	for (int i = 0; i < 2; i++) {
		struct liveupdate_ioctl_retrieve_session rs = { .size = sizeof(rs) };
		strncpy((char *)rs.name, session_names[i], sizeof(rs.name) - 1);
		if (ioctl(lu, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, &rs)) {
			out("LUOGT RETRIEVE-SESSION-FAILED name=%s errno=%d", session_names[i], errno);
			sess[i] = -1; continue;
		}
		sess[i] = rs.fd;
		out("LUOGT RETRIEVED-SESSION name=%s fd=%d", session_names[i], rs.fd);
	}
	for (int i = 0; i < NSPEC; i++) {
		struct spec *s = &specs[i];
		if (sess[s->session] < 0) continue;
		struct liveupdate_session_retrieve_fd rf = { .size = sizeof(rf), .token = s->token };
		if (ioctl(sess[s->session], LIVEUPDATE_SESSION_RETRIEVE_FD, &rf)) {
			out("LUOGT RETRIEVE-FD-FAILED fid=%d errno=%d", s->fid, errno);
			continue;
		}
		print_file("retrieved", s, rf.fd);
		print_pages("retrieved", s->fid, rf.fd, s->size, s, 1);
	}
	run_script("B2");
	out("LUOGT DONE");
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	pagemap_fd = open("/proc/self/pagemap", O_RDONLY);
	kpf_fd = open("/proc/kpageflags", O_RDONLY);
	if (pagemap_fd < 0 || kpf_fd < 0) die("open pagemap/kpageflags");
	if (argc >= 5 && !strcmp(argv[1], "a")) return stage_a(argv[2], argv[3], argv[4]);
	if (argc >= 2 && !strcmp(argv[1], "b")) return stage_b();
	fprintf(stderr, "usage: luo_guest a KERNEL INITRD CMDLINE | luo_guest b\n");
	return 2;
}
