// SPDX-License-Identifier: GPL-2.0
/*
 * pkram_fixture.c - perform the PKRAM save path inside a stock kernel.
 *
 * Test-fixture module for volatility_pkram (tools/realkernel/). It is NOT
 * PKRAM: a stock Debian kernel has no mm/pkram.c. It lays out, in real kernel
 * memory, exactly the structures that the PKRAM RFC's save path and reboot
 * notifier leave behind, so that a physical memory dump of the guest looks
 * like one taken after __pkram_reboot() ran:
 *
 *   rev=1  RFC v1 (May 2020): pkram_obj {data_pfn,data_len,link_pfn,obj_pfn},
 *          LIFO page links, one-page byte stream, the identity-map pagetable
 *          built exactly as "[RFC 09/43] PKRAM: build a physical mapping
 *          pagetable of pages to be preserved" does, super block
 *          {node_pfn, pgd_pfn}.
 *   rev=2  RFC v2 (March 2021): magic, FIFO head/tail links, multi-page byte
 *          streams, region list (pkram_init_regions_list /
 *          pkram_populate_regions_list emulated, including the page-count
 *          estimate, prepending and prev_pfn handling).
 *
 * What is saved follows mm/shmem_pkram.c: one node "shmem-<name>" per tmpfs
 * mount given in mounts=, one object per regular file directly in the
 * mount's root (walking sb->s_root->d_subdirs), byte stream = the 48-byte
 * struct file_header + the name, page stream = the file's own page-cache
 * folios (a reference is taken and never dropped, as pkram_save_file_page()
 * does). A node "test-bytes" (consumer unknown) holds one object with a byte
 * stream of known content (10000 bytes in v2: 3 byte pages; 3000 in v1, whose
 * byte stream is one page) and a page stream of 512 physically contiguous,
 * 2 MiB aligned order-0 pages (fills a whole PMD bitmap: PSE in v1; spans two
 * links) plus two more pages after an index gap.
 *
 * Ground truth is printed with printk lines starting "PKRAMGT " followed by
 * one JSON object; tools/realkernel/mkmanifest.py turns them into the
 * manifest. Every metadata page, every link entry run, every file header,
 * the super block and (v2) every region is printed. Content hashes are
 * computed here, from the saved pages, with the kernel's sha256 library.
 *
 * The super block page is the page named by pkram=<hex pfn> on the kernel
 * command line (read from saved_command_line, whose address init passes in
 * from /proc/kallsyms because the symbol is not exported; /proc/cmdline is
 * the fallback). build.sh reserves that page with memmap=4K$<addr>, so it is
 * an e820-reserved hole: it is mapped with memremap() (which returns the
 * direct-map address when the page is System RAM and maps it otherwise).
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/gfp.h>
#include <linux/highmem.h>
#include <linux/pagemap.h>
#include <linux/pagevec.h>
#include <linux/fs.h>
#include <linux/namei.h>
#include <linux/dcache.h>
#include <linux/io.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>
#include <linux/bitmap.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/time64.h>
#include <linux/huge_mm.h>
#include <crypto/sha2.h>
#include <asm/pgtable.h>

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("PKRAM save-path emulation for memory forensics test fixtures");

static int rev = 1;
module_param(rev, int, 0444);
MODULE_PARM_DESC(rev, "PKRAM RFC revision whose layout to write: 1 or 2");

static char *mounts = "files:/pk/files,huge:/pk/huge";
module_param(mounts, charp, 0444);
MODULE_PARM_DESC(mounts, "comma separated NAME:PATH tmpfs mounts, saved as nodes shmem-NAME");

static unsigned long cmdline_addr;
module_param(cmdline_addr, ulong, 0444);
MODULE_PARM_DESC(cmdline_addr, "address of the saved_command_line variable (from /proc/kallsyms)");

static int test_bytes = 1;
module_param(test_bytes, int, 0444);
MODULE_PARM_DESC(test_bytes, "also save the non-tmpfs node test-bytes");

#define GT(fmt, ...) pr_info("PKRAMGT " fmt "\n", ##__VA_ARGS__)

/* ---- on-memory structures (see docs/pkram-format.md sections 3-7, 9) ---- */

typedef u64 pkram_entry_t;

#define PKRAM_MAGIC		0x706B726D
#define PKRAM_NAME_MAX		256
#define PKRAM_SAVE		1
#define PKRAM_ACCMODE_MASK	3
#define PKRAM_ENTRY_FLAGS_SHIFT	0x5
#define PKRAM_ENTRY_FLAGS_MASK	0x7f
#define PKRAM_ENTRY_ORDER_MASK	0x1f
#define PKRAM_PAGE_TRANS_HUGE	0x1

struct pkram_link {
	u64 link_pfn;
	u64 index;
	pkram_entry_t entry[];
};
#define PKRAM_LINK_ENTRIES_MAX \
	((PAGE_SIZE - sizeof(struct pkram_link)) / sizeof(pkram_entry_t))

struct pkram_obj_v1 {
	u64 data_pfn;
	u64 data_len;
	u64 link_pfn;
	u64 obj_pfn;
};

struct pkram_obj_v2 {
	u64 pages_head_link_pfn;
	u64 pages_tail_link_pfn;
	u64 bytes_head_link_pfn;
	u64 bytes_tail_link_pfn;
	u64 data_len;
	u64 obj_pfn;
};

struct pkram_node {
	u32 flags;
	u64 obj_pfn;
	u64 node_pfn;
	u8 name[PKRAM_NAME_MAX];
};

struct pkram_super_block_v1 {
	u64 node_pfn;
	u64 pgd_pfn;
};

struct pkram_super_block_v2 {
	u32 magic;
	u64 node_pfn;
	u64 region_list_pfn;
	u64 nr_regions;
};

struct pkram_region {
	u64 base;
	u64 size;
};

struct pkram_region_list {
	u64 prev_pfn;
	u64 next_pfn;
	struct pkram_region regions[];
};
#define PKRAM_REGIONS_LIST_MAX \
	((PAGE_SIZE - sizeof(struct pkram_region_list)) / sizeof(struct pkram_region))

struct file_header {
	u32 mode;
	u32 uid;
	u32 gid;
	u32 namelen;
	u64 size;
	s64 atime;
	s64 mtime;
	s64 ctime;
};

static_assert(sizeof(struct file_header) == 48);
static_assert(sizeof(struct pkram_node) == 0x18 + 256);
static_assert(PKRAM_LINK_ENTRIES_MAX == 510);
static_assert(PKRAM_REGIONS_LIST_MAX == 255);

/* ---- state ---- */

static void *pkram_sb;			/* memremap()ed super block page */
static unsigned long pkram_sb_pfn;

#define MAX_NODES 8
static struct page *node_pages[MAX_NODES];	/* creation order */
static int nr_nodes;

/* v2: set of preserved PFNs, stands in for v2's (unpreserved) pagetable */
#define PRESERVED_MAX_PFN (1UL << 20)
static unsigned long *preserved;

/* v1: the identity-map pagetable (RFC 09/43) */
static pgd_t *pkram_pgd;
static DEFINE_SPINLOCK(pkram_pgd_lock);

struct pkram_stream {
	struct pkram_node *node;
	const char *node_name;
	void *obj;
	unsigned long obj_pfn;
	/* page stream */
	struct pkram_link *link;
	unsigned int entry_idx;
	unsigned long next_index;
	/* byte stream */
	struct pkram_link *blink;	/* v2 */
	unsigned int bentry_idx;	/* v2 */
	struct page *data_page;
	unsigned int data_offset;
	/* ground truth bookkeeping: every saved entry, in save order */
	struct saved { unsigned long index; struct page *page; unsigned int order; } *saved;
	unsigned int nr_saved, max_saved;
	struct page *byte_pages[16];
	unsigned int nr_byte_pages;
};

static inline unsigned long pfn_of(void *addr)
{
	return page_to_pfn(virt_to_page(addr));
}

/* ---- identity map (v1), verbatim algorithm of RFC v1 09/43 ---- */

static int pkram_add_identity_map(struct page *page);

static struct page *__pkram_alloc_page(gfp_t gfp_mask, bool add_to_map, const char *kind)
{
	struct page *page;
	int err;

	page = alloc_page(gfp_mask);
	if (!page)
		return NULL;
	GT("{\"t\":\"page\",\"pfn\":%lu,\"kind\":\"%s\"}", page_to_pfn(page), kind);
	if (add_to_map) {
		if (rev == 1) {
			err = pkram_add_identity_map(page);
			if (err) {
				__free_page(page);
				return NULL;
			}
		} else {
			__set_bit(page_to_pfn(page), preserved);
		}
	}
	return page;
}

static inline struct page *pkram_alloc_page(gfp_t gfp_mask, const char *kind)
{
	return __pkram_alloc_page(gfp_mask, true, kind);
}

static unsigned long *pkram_alloc_pte_bitmap(void)
{
	struct page *pg = __pkram_alloc_page(GFP_KERNEL | __GFP_ZERO, false, "bitmap");

	return pg ? page_address(pg) : NULL;
}

/*
 * The seed overrides set_p4d() so that the PTI user-copy logic of the
 * architecture's set_p4d() is not applied to this non-CPU table. set_pgd()
 * is only reached with 5-level paging; it gets the same treatment here for
 * the same reason (the architecture's version would write into the page
 * after the PGD when PTI is on).
 */
#undef set_p4d
#define set_p4d(p4dp, p4d) WRITE_ONCE(*(p4dp), (p4d))
#undef set_pgd
#define set_pgd(pgdp, pgd) WRITE_ONCE(*(pgdp), (pgd))

static int pkram_add_identity_map(struct page *page)
{
	unsigned long paddr;
	unsigned long *bitmap;
	int result = -ENOMEM;
	unsigned int index;
	struct page *pg;
	LIST_HEAD(list);
	pgd_t *pgd;
	p4d_t *p4d;
	pud_t *pud;
	pmd_t *pmd;

	if (!pkram_pgd) {
		spin_lock(&pkram_pgd_lock);
		if (!pkram_pgd) {
			pg = __pkram_alloc_page(GFP_ATOMIC | __GFP_ZERO, false, "pgd");
			if (!pg)
				goto err;
			pkram_pgd = page_address(pg);
		}
		spin_unlock(&pkram_pgd_lock);
	}

	paddr = __pa(page_address(page));
again:
	pgd = pkram_pgd;
	pgd += pgd_index(paddr);
	if (pgd_none(*pgd)) {
		spin_lock(&pkram_pgd_lock);
		if (pgd_none(*pgd)) {
			pg = __pkram_alloc_page(GFP_ATOMIC | __GFP_ZERO, false, "p4d");
			if (!pg)
				goto err;
			list_add(&pg->lru, &list);
			p4d = page_address(pg);
			set_pgd(pgd, __pgd(__pa(p4d)));
		}
		spin_unlock(&pkram_pgd_lock);
	}
	p4d = p4d_offset(pgd, paddr);
	if (p4d_none(*p4d)) {
		spin_lock(&pkram_pgd_lock);
		if (p4d_none(*p4d)) {
			pg = __pkram_alloc_page(GFP_ATOMIC | __GFP_ZERO, false, "pud");
			if (!pg)
				goto err;
			list_add(&pg->lru, &list);
			pud = page_address(pg);
			set_p4d(p4d, __p4d(__pa(pud)));
		}
		spin_unlock(&pkram_pgd_lock);
	}
	pud = pud_offset(p4d, paddr);
	if (pud_none(*pud)) {
		spin_lock(&pkram_pgd_lock);
		if (pud_none(*pud)) {
			pg = __pkram_alloc_page(GFP_ATOMIC | __GFP_ZERO, false, "pmd");
			if (!pg)
				goto err;
			list_add(&pg->lru, &list);
			pmd = page_address(pg);
			set_pud(pud, __pud(__pa(pmd)));
		}
		spin_unlock(&pkram_pgd_lock);
	}
	pmd = pmd_offset(pud, paddr);
	if (pmd_none(*pmd)) {
		spin_lock(&pkram_pgd_lock);
		if (pmd_none(*pmd)) {
			if (PageTransHuge(page)) {
				set_pmd(pmd, pmd_mkhuge(*pmd));
				spin_unlock(&pkram_pgd_lock);
				goto next;
			}
			/*
			 * The seed allocates the bitmap page with GFP_KERNEL
			 * under the spinlock; GFP_ATOMIC here (also for the
			 * other table pages) so that this module does not
			 * sleep in atomic context. Same zeroed order-0 page.
			 */
			bitmap = pkram_alloc_pte_bitmap();
			if (!bitmap)
				goto err;
			pg = virt_to_page(bitmap);
			list_add(&pg->lru, &list);
			set_pmd(pmd, __pmd(__pa(bitmap)));
		} else {
			BUG_ON(pmd_large(*pmd));
			bitmap = __va(pmd_val(*pmd));
		}
		spin_unlock(&pkram_pgd_lock);
	} else {
		BUG_ON(pmd_large(*pmd));
		bitmap = __va(pmd_val(*pmd));
	}

	index = pte_index(paddr);
	BUG_ON(test_bit(index, bitmap));
	set_bit(index, bitmap);
	smp_mb__after_atomic();
	if (bitmap_full(bitmap, PTRS_PER_PTE))
		set_pmd(pmd, pmd_mkhuge(*pmd));
next:
	/* Add mappings for any pagetable pages that were allocated */
	if (!list_empty(&list)) {
		page = list_first_entry(&list, struct page, lru);
		list_del_init(&page->lru);
		paddr = __pa(page_address(page));
		goto again;
	}

	return 0;
err:
	spin_unlock(&pkram_pgd_lock);
	while (!list_empty(&list)) {
		pg = list_first_entry(&list, struct page, lru);
		list_del_init(&pg->lru);
	}
	return result;
}

/* Marks a saved data page (v1: pkram_save_page() -> pkram_add_identity_map()). */
static int pkram_mark_saved(struct page *page)
{
	if (rev == 1)
		return pkram_add_identity_map(page);
	bitmap_set(preserved, page_to_pfn(page), compound_nr(page));
	return 0;
}

/* ---- nodes, objects, links (pkram.c save path) ---- */

static int pkram_prepare_save(struct pkram_stream *ps, const char *name)
{
	struct page *page;
	struct pkram_node *node;

	if (strlen(name) >= PKRAM_NAME_MAX || nr_nodes >= MAX_NODES)
		return -ENAMETOOLONG;
	page = pkram_alloc_page(GFP_KERNEL | __GFP_ZERO, "node");
	if (!page)
		return -ENOMEM;
	node = page_address(page);
	node->flags = PKRAM_SAVE;
	strcpy(node->name, name);
	node_pages[nr_nodes++] = page;	/* pkram_insert_node() */

	memset(ps, 0, sizeof(*ps));
	ps->node = node;
	ps->node_name = name;
	GT("{\"t\":\"node\",\"name\":\"%s\",\"pfn\":%lu}", name, page_to_pfn(page));
	return 0;
}

static int pkram_prepare_save_obj(struct pkram_stream *ps, const char *what)
{
	struct pkram_node *node = ps->node;
	struct page *page;

	page = pkram_alloc_page(GFP_KERNEL | __GFP_ZERO, "obj");
	if (!page)
		return -ENOMEM;
	ps->obj = page_address(page);
	ps->obj_pfn = page_to_pfn(page);
	/* objects are prepended: newest first */
	if (rev == 1)
		((struct pkram_obj_v1 *)ps->obj)->obj_pfn = node->obj_pfn;
	else
		((struct pkram_obj_v2 *)ps->obj)->obj_pfn = node->obj_pfn;
	node->obj_pfn = page_to_pfn(page);

	ps->link = NULL;
	ps->entry_idx = 0;
	ps->next_index = 0;
	ps->blink = NULL;
	ps->bentry_idx = 0;
	ps->data_page = NULL;
	ps->data_offset = 0;
	ps->nr_saved = 0;
	ps->nr_byte_pages = 0;
	GT("{\"t\":\"obj\",\"node\":\"%s\",\"pfn\":%lu,\"what\":\"%s\"}",
	   ps->node_name, ps->obj_pfn, what);
	return 0;
}

static void pkram_finish_save(struct pkram_stream *ps)
{
	smp_wmb();
	ps->node->flags &= ~PKRAM_ACCMODE_MASK;
}

/* v1: LIFO (pkram_add_link pushes at the head); v2: FIFO (append at tail). */
static void pkram_add_link(struct pkram_stream *ps, struct pkram_link *link, bool bytes)
{
	u64 link_pfn = pfn_of(link);

	if (rev == 1) {
		struct pkram_obj_v1 *obj = ps->obj;

		link->link_pfn = obj->link_pfn;
		obj->link_pfn = link_pfn;
	} else {
		struct pkram_obj_v2 *obj = ps->obj;
		u64 *head = bytes ? &obj->bytes_head_link_pfn : &obj->pages_head_link_pfn;
		u64 *tail = bytes ? &obj->bytes_tail_link_pfn : &obj->pages_tail_link_pfn;

		if (!*head) {
			*head = link_pfn;
			*tail = link_pfn;
		} else {
			struct pkram_link *t = pfn_to_kaddr(*tail);

			t->link_pfn = link_pfn;
			*tail = link_pfn;
		}
	}
}

static struct pkram_link *pkram_new_link(struct pkram_stream *ps, bool bytes)
{
	struct page *page;
	struct pkram_link *link;

	page = pkram_alloc_page(GFP_KERNEL | __GFP_ZERO, bytes ? "bytes_link" : "link");
	if (!page)
		return NULL;
	link = page_address(page);
	pkram_add_link(ps, link, bytes);
	return link;
}

static pkram_entry_t pkram_entry(struct page *page)
{
	short flags = 0;
	pkram_entry_t p;

	if (PageTransHuge(page))
		flags |= PKRAM_PAGE_TRANS_HUGE;
	p = page_to_phys(page);
	p |= compound_order(page);
	p |= ((flags & PKRAM_ENTRY_FLAGS_MASK) << PKRAM_ENTRY_FLAGS_SHIFT);
	return p;
}

/* __pkram_save_page() of both revisions: new link when none, full, or index gap */
static int __pkram_save_page(struct pkram_stream *ps, struct page *page, unsigned long index)
{
	struct pkram_link *link = ps->link;
	pkram_entry_t p;

	if (!link || ps->entry_idx >= PKRAM_LINK_ENTRIES_MAX || index != ps->next_index) {
		link = pkram_new_link(ps, false);
		if (!link)
			return -ENOMEM;
		ps->link = link;
		ps->entry_idx = 0;
		ps->next_index = link->index = index;
	}
	get_page(page);
	p = pkram_entry(page);
	link->entry[ps->entry_idx] = p;
	GT("{\"t\":\"entry\",\"obj\":%lu,\"link\":%lu,\"slot\":%u,\"index\":%lu,\"pfn\":%lu,\"order\":%u,\"flags\":%llu}",
	   ps->obj_pfn, pfn_of(link), ps->entry_idx, index, page_to_pfn(page),
	   compound_order(page), (p >> PKRAM_ENTRY_FLAGS_SHIFT) & PKRAM_ENTRY_FLAGS_MASK);
	ps->entry_idx++;
	ps->next_index += compound_nr(page);

	if (ps->nr_saved == ps->max_saved) {
		unsigned int n = ps->max_saved ? 2 * ps->max_saved : 256;
		struct saved *s = krealloc(ps->saved, n * sizeof(*s), GFP_KERNEL);

		if (!s)
			return -ENOMEM;
		ps->saved = s;
		ps->max_saved = n;
	}
	ps->saved[ps->nr_saved].index = index;
	ps->saved[ps->nr_saved].page = page;
	ps->saved[ps->nr_saved].order = compound_order(page);
	ps->nr_saved++;
	return 0;
}

/* pkram_save_page() (v1) / pkram_save_file_page() (v2) */
static int pkram_save_page(struct pkram_stream *ps, struct page *page, unsigned long index)
{
	int err = __pkram_save_page(ps, page, index);

	if (!err)
		err = pkram_mark_saved(page);
	return err;
}

/* pkram_write(): v1 one data page, v2 link list of order-0 byte pages */
static ssize_t pkram_write(struct pkram_stream *ps, const void *buf, size_t count)
{
	size_t copy_count, written = 0;
	void *addr;

	if (rev == 1) {
		struct pkram_obj_v1 *obj = ps->obj;

		if (!ps->data_page) {
			struct page *page = pkram_alloc_page(GFP_KERNEL | __GFP_HIGHMEM | __GFP_ZERO,
							     "bytes_data");
			if (!page)
				return -ENOMEM;
			ps->data_page = page;
			ps->data_offset = 0;
			obj->data_pfn = page_to_pfn(page);
			ps->byte_pages[ps->nr_byte_pages++] = page;
		}
		if (WARN_ON(count > PAGE_SIZE - ps->data_offset))
			return -EFBIG;	/* v1: BUG_ON() */
		addr = kmap_local_page(ps->data_page);
		memcpy(addr + ps->data_offset, buf, count);
		kunmap_local(addr);
		obj->data_len += count;
		ps->data_offset += count;
		return count;
	}

	while (count > 0) {
		struct pkram_obj_v2 *obj = ps->obj;

		if (!ps->data_page) {
			struct page *page;

			page = pkram_alloc_page(GFP_KERNEL | __GFP_HIGHMEM | __GFP_ZERO, "bytes_data");
			if (!page)
				return -ENOMEM;
			/* __pkram_bytes_save_page(): link->index stays 0 */
			if (!ps->blink || ps->bentry_idx >= PKRAM_LINK_ENTRIES_MAX) {
				ps->blink = pkram_new_link(ps, true);
				if (!ps->blink)
					return -ENOMEM;
				ps->bentry_idx = 0;
			}
			ps->blink->entry[ps->bentry_idx] = pkram_entry(page);
			GT("{\"t\":\"bentry\",\"obj\":%lu,\"link\":%lu,\"slot\":%u,\"pfn\":%lu}",
			   ps->obj_pfn, pfn_of(ps->blink), ps->bentry_idx, page_to_pfn(page));
			ps->bentry_idx++;
			ps->data_page = page;
			ps->data_offset = 0;
			if (ps->nr_byte_pages < ARRAY_SIZE(ps->byte_pages))
				ps->byte_pages[ps->nr_byte_pages++] = page;
		}
		copy_count = min_t(size_t, count, PAGE_SIZE - ps->data_offset);
		addr = kmap_local_page(ps->data_page);
		memcpy(addr + ps->data_offset, buf, copy_count);
		kunmap_local(addr);
		buf += copy_count;
		obj->data_len += copy_count;
		ps->data_offset += copy_count;
		if (ps->data_offset >= PAGE_SIZE)
			ps->data_page = NULL;
		written += copy_count;
		count -= copy_count;
	}
	return written;
}

/* ---- hashing the saved state (ground truth) ---- */

static void hex32(const u8 *d, char *out)
{
	int i;

	for (i = 0; i < SHA256_DIGEST_SIZE; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

static int cmp_saved(const void *a, const void *b)
{
	const struct saved *x = a, *y = b;

	return x->index < y->index ? -1 : x->index > y->index;
}

#include <linux/sort.h>

/*
 * SHA-256 of the page stream placed by index: limit = number of bytes to
 * hash (file size for files; (max index + npages) * 4096 for raw objects).
 * Holes hash as zeros.
 */
static void hash_pages(struct pkram_stream *ps, u64 limit, char *hex, u64 *span)
{
	static const u8 zero[PAGE_SIZE];
	struct sha256_state st;
	u8 digest[SHA256_DIGEST_SIZE];
	u64 pos = 0, end = 0;
	unsigned int i, j;

	sort(ps->saved, ps->nr_saved, sizeof(*ps->saved), cmp_saved, NULL);
	for (i = 0; i < ps->nr_saved; i++) {
		u64 e = (ps->saved[i].index + (1UL << ps->saved[i].order)) * PAGE_SIZE;

		if (e > end)
			end = e;
	}
	if (span)
		*span = end;
	if (limit == U64_MAX)
		limit = end;

	sha256_init(&st);
	for (i = 0; i < ps->nr_saved && pos < limit; i++) {
		struct saved *s = &ps->saved[i];
		u64 start = (u64)s->index * PAGE_SIZE;

		while (pos < start && pos < limit) {
			u64 n = min_t(u64, PAGE_SIZE, min(start, limit) - pos);

			sha256_update(&st, zero, n);
			pos += n;
		}
		for (j = 0; j < (1U << s->order) && pos < limit; j++) {
			void *a = kmap_local_page(s->page + j);
			u64 n = min_t(u64, PAGE_SIZE, limit - pos);

			sha256_update(&st, a, n);
			kunmap_local(a);
			pos += n;
		}
	}
	while (pos < limit) {
		u64 n = min_t(u64, PAGE_SIZE, limit - pos);

		sha256_update(&st, zero, n);
		pos += n;
	}
	sha256_final(&st, digest);
	hex32(digest, hex);
}

/* ---- tmpfs (mm/shmem_pkram.c save_tree / save_file / save_file_content) ---- */

static void print_name_hex(char *out, const unsigned char *name, unsigned int len)
{
	unsigned int i;

	for (i = 0; i < len; i++)
		sprintf(out + 2 * i, "%02x", name[i]);
	out[2 * len] = 0;
}

static int save_file_content(struct pkram_stream *ps, struct address_space *mapping)
{
	struct folio_batch fbatch;
	pgoff_t start = 0, end;
	unsigned int i, n;
	int err = 0;

	/* shmem_pkram: end = DIV_ROUND_UP(i_size, PAGE_SIZE), an inclusive bound */
	end = DIV_ROUND_UP(i_size_read(mapping->host), PAGE_SIZE);
	folio_batch_init(&fbatch);
	while ((n = filemap_get_folios(mapping, &start, end, &fbatch)) != 0) {
		for (i = 0; i < n; i++) {
			struct folio *folio = fbatch.folios[i];

			folio_lock(folio);
			err = pkram_save_page(ps, &folio->page, folio->index);
			folio_unlock(folio);
			if (err)
				break;
		}
		folio_batch_release(&fbatch);
		if (err)
			break;
		cond_resched();
	}
	return err;
}

static int save_file(struct dentry *dentry, struct pkram_stream *ps)
{
	struct inode *inode = d_inode(dentry);
	struct file_header hdr;
	char namehex[2 * NAME_MAX + 1];
	char hex[2 * SHA256_DIGEST_SIZE + 1];
	ssize_t ret;
	int err;

	if (!S_ISREG(inode->i_mode) || inode->i_nlink > 1)
		return -EINVAL;

	memset(&hdr, 0, sizeof(hdr));
	hdr.mode = inode->i_mode;
	hdr.uid = __kuid_val(inode->i_uid);
	hdr.gid = __kgid_val(inode->i_gid);
	hdr.namelen = dentry->d_name.len;
	hdr.size = i_size_read(inode);
	hdr.atime = timespec64_to_ns(&inode->i_atime);
	hdr.mtime = timespec64_to_ns(&inode->i_mtime);
	hdr.ctime = timespec64_to_ns(&inode->i_ctime);

	ret = pkram_write(ps, &hdr, sizeof(hdr));
	if (ret < 0)
		return ret;
	ret = pkram_write(ps, dentry->d_name.name, dentry->d_name.len);
	if (ret < 0)
		return ret;
	err = save_file_content(ps, inode->i_mapping);
	if (err)
		return err;

	hash_pages(ps, hdr.size, hex, NULL);
	print_name_hex(namehex, dentry->d_name.name, dentry->d_name.len);
	GT("{\"t\":\"file\",\"node\":\"%s\",\"obj\":%lu,\"name_hex\":\"%s\",\"mode\":%u,\"uid\":%u,\"gid\":%u,\"size\":%llu,\"atime_ns\":%lld,\"mtime_ns\":%lld,\"ctime_ns\":%lld,\"sha256\":\"%s\",\"bytes_len\":%zu}",
	   ps->node_name, ps->obj_pfn, namehex, hdr.mode, hdr.uid, hdr.gid, hdr.size,
	   hdr.atime, hdr.mtime, hdr.ctime, hex, sizeof(hdr) + dentry->d_name.len);
	return 0;
}

static int save_tree(struct super_block *sb, struct pkram_stream *ps)
{
	struct dentry *dentry, *root = sb->s_root;
	struct dentry **list;
	int n = 0, i, err = 0;

	list = kcalloc(256, sizeof(*list), GFP_KERNEL);
	if (!list)
		return -ENOMEM;
	inode_lock(d_inode(root));
	spin_lock(&root->d_lock);
	list_for_each_entry(dentry, &root->d_subdirs, d_child) {
		if (d_unhashed(dentry) || !dentry->d_inode)
			continue;
		if (n == 256)
			break;
		list[n++] = dget(dentry);
	}
	spin_unlock(&root->d_lock);

	for (i = 0; i < n && !err; i++) {
		err = pkram_prepare_save_obj(ps, "file");
		if (!err)
			err = save_file(list[i], ps);
	}
	inode_unlock(d_inode(root));
	for (i = 0; i < n; i++)
		dput(list[i]);
	kfree(list);
	return err;
}

static int save_mount(const char *name, const char *path)
{
	struct pkram_stream ps;
	struct path p;
	char nodename[PKRAM_NAME_MAX];
	int err;

	err = kern_path(path, LOOKUP_FOLLOW | LOOKUP_DIRECTORY, &p);
	if (err) {
		pr_err("pkram_fixture: %s: %d\n", path, err);
		return err;
	}
	snprintf(nodename, sizeof(nodename), "shmem-%s", name);
	err = pkram_prepare_save(&ps, nodename);
	if (!err) {
		err = save_tree(p.dentry->d_sb, &ps);
		if (!err)
			pkram_finish_save(&ps);
	}
	kfree(ps.saved);
	path_put(&p);
	return err;
}

/* ---- node "test-bytes": a non-tmpfs consumer ---- */

static int save_test_bytes(void)
{
	struct pkram_stream ps;
	struct page *block;
	size_t len = rev == 1 ? 3000 : 10000;
	char hex[2 * SHA256_DIGEST_SIZE + 1], phex[2 * SHA256_DIGEST_SIZE + 1];
	u8 digest[SHA256_DIGEST_SIZE];
	u8 *buf;
	u64 span;
	size_t i;
	int err, k;

	err = pkram_prepare_save(&ps, "test-bytes");
	if (err)
		return err;
	err = pkram_prepare_save_obj(&ps, "raw");
	if (err)
		return err;

	buf = kmalloc(len, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	for (i = 0; i < len; i++) {
		/* readable, but no two 64-byte lines alike */
		if (i % 64 == 63)
			buf[i] = '\n';
		else if (i % 64 < 8)
			buf[i] = "0123456789abcdef"[(i / 64 >> (4 * (7 - i % 64))) & 15];
		else
			buf[i] = "PKRAM-test-byte-stream:"[i % 23] ^ ((i / 64) & 1 ? 0x20 : 0);
	}
	err = pkram_write(&ps, buf, len);
	if (err < 0)
		goto out;
	sha256(buf, len, digest);
	hex32(digest, hex);

	/*
	 * Page stream: an order-9 block split into 512 order-0 pages (2 MiB
	 * aligned and contiguous, so the v1 bitmap of that PMD fills up and
	 * gets PSE), indices 0..511 (two links: 510 + 2), then an index gap
	 * and indices 600..601 (a third link).
	 */
	block = alloc_pages(GFP_KERNEL, 9);
	if (!block) {
		err = -ENOMEM;
		goto out;
	}
	split_page(block, 9);
	for (k = 0; k < 514; k++) {
		struct page *pg = k < 512 ? block + k : alloc_page(GFP_KERNEL);
		unsigned long index = k < 512 ? k : 600 + (k - 512);
		char *a;
		int off;

		if (!pg) {
			err = -ENOMEM;
			goto out;
		}
		a = kmap_local_page(pg);
		for (off = 0; off < PAGE_SIZE; off += 64)
			snprintf(a + off, 64, "test-bytes page index %05lu pfn %08lx off %04x\n",
				 index, page_to_pfn(pg), off);
		kunmap_local(a);
		err = pkram_save_page(&ps, pg, index);
		/* the stream holds the reference now (get_page in __pkram_save_page) */
		put_page(pg);
		if (err)
			goto out;
	}
	hash_pages(&ps, U64_MAX, phex, &span);
	GT("{\"t\":\"raw\",\"node\":\"test-bytes\",\"obj\":%lu,\"bytes_len\":%zu,\"bytes_sha256\":\"%s\",\"pages_len\":%llu,\"pages_sha256\":\"%s\"}",
	   ps.obj_pfn, len, hex, span, phex);
	pkram_finish_save(&ps);
out:
	kfree(buf);
	kfree(ps.saved);
	return err < 0 ? err : 0;
}

/* ---- __pkram_reboot() ---- */

static void walk_preserved(void (*cb)(u64 base, u64 size, void *priv), void *priv)
{
	unsigned long s = 0, e;

	for (;;) {
		s = find_next_bit(preserved, PRESERVED_MAX_PFN, s);
		if (s >= PRESERVED_MAX_PFN)
			break;
		e = find_next_zero_bit(preserved, PRESERVED_MAX_PFN, s);
		cb(PFN_PHYS(s), PFN_PHYS(e - s), priv);
		s = e;
	}
}

static void count_region_cb(u64 base, u64 size, void *priv)
{
	(*(unsigned long *)priv)++;
}

static struct pkram_region_list *pkram_regions_list;

struct regions_priv {
	struct pkram_region_list *curr, *last;
	unsigned long nr_regions;
	int idx;
	bool overflow;
};

static void add_region_cb(u64 base, u64 size, void *private)
{
	struct regions_priv *priv = private;
	struct pkram_region_list *rl = priv->curr;
	int i = priv->idx;

	if (!rl) {
		priv->overflow = true;	/* the kernel WARNs and stops here */
		return;
	}
	if (!i)
		priv->last = priv->curr;
	rl->regions[i].base = base;
	rl->regions[i].size = size;
	GT("{\"t\":\"region\",\"base\":%llu,\"size\":%llu,\"list\":%lu,\"slot\":%d}",
	   base, size, pfn_of(rl), i);
	priv->nr_regions++;
	i++;
	if (i == PKRAM_REGIONS_LIST_MAX) {
		priv->curr = rl->next_pfn ? pfn_to_kaddr(rl->next_pfn) : NULL;
		i = 0;
	}
	priv->idx = i;
}

static int pkram_init_regions_list(void)
{
	struct pkram_region_list *rl;
	unsigned long nr_regions = 0, nr_lpages;
	struct page *page;

	walk_preserved(count_region_cb, &nr_regions);
	nr_lpages = DIV_ROUND_UP(nr_regions, PKRAM_REGIONS_LIST_MAX);
	nr_regions += nr_lpages;
	nr_lpages = DIV_ROUND_UP(nr_regions, PKRAM_REGIONS_LIST_MAX);

	for (; nr_lpages; nr_lpages--) {
		page = pkram_alloc_page(GFP_KERNEL | __GFP_ZERO, "region_list");
		if (!page)
			return -ENOMEM;
		rl = page_address(page);
		if (pkram_regions_list) {
			rl->next_pfn = pfn_of(pkram_regions_list);
			pkram_regions_list->prev_pfn = page_to_pfn(page);
		}
		pkram_regions_list = rl;
	}
	return 0;
}

static void __pkram_reboot(void)
{
	unsigned long node_pfn = 0, rl_pfn = 0, nr_regions = 0, pgd_pfn = 0;
	struct pkram_node *node;
	int i, err = 0;

	if (rev == 2) {
		/* pkram_add_identity_map(virt_to_page(pkram_sb)) */
		__set_bit(pkram_sb_pfn, preserved);
	}
	/* list_for_each_entry_reverse(pkram_nodes): oldest node first */
	for (i = 0; i < nr_nodes; i++) {
		node = page_address(node_pages[i]);
		if (node->flags & PKRAM_ACCMODE_MASK)
			continue;
		node->node_pfn = node_pfn;
		node_pfn = page_to_pfn(node_pages[i]);
		GT("{\"t\":\"chain\",\"pfn\":%lu,\"node_pfn\":%llu}", node_pfn, node->node_pfn);
	}
	if (rev == 1) {
		if (pkram_pgd)
			pgd_pfn = pfn_of(pkram_pgd);
	} else {
		struct regions_priv priv = { };

		err = pkram_init_regions_list();
		if (!err) {
			priv.curr = pkram_regions_list;
			walk_preserved(add_region_cb, &priv);
			pkram_regions_list->prev_pfn = pfn_of(priv.last);
			nr_regions = priv.nr_regions;
			rl_pfn = pfn_of(pkram_regions_list);
			if (priv.overflow)
				pr_warn("pkram_fixture: region list truncated\n");
		}
	}

	memset(pkram_sb, 0, PAGE_SIZE);
	if (rev == 1) {
		struct pkram_super_block_v1 *sb = pkram_sb;

		if (node_pfn) {
			sb->node_pfn = node_pfn;
			sb->pgd_pfn = pgd_pfn;
		}
		GT("{\"t\":\"sb\",\"rev\":1,\"pfn\":%lu,\"node_pfn\":%llu,\"pgd_pfn\":%llu,\"paging_levels\":%d}",
		   pkram_sb_pfn, sb->node_pfn, sb->pgd_pfn, pgtable_l5_enabled() ? 5 : 4);
	} else {
		struct pkram_super_block_v2 *sb = pkram_sb;

		if (!err && node_pfn) {
			sb->magic = PKRAM_MAGIC;
			sb->node_pfn = node_pfn;
			sb->region_list_pfn = rl_pfn;
			sb->nr_regions = nr_regions;
		}
		GT("{\"t\":\"sb\",\"rev\":2,\"pfn\":%lu,\"magic\":%u,\"node_pfn\":%llu,\"region_list_pfn\":%llu,\"nr_regions\":%llu,\"rl_prev_pfn\":%llu}",
		   pkram_sb_pfn, sb->magic, sb->node_pfn, sb->region_list_pfn, sb->nr_regions,
		   pkram_regions_list ? pkram_regions_list->prev_pfn : 0);
	}
	for (i = 0; i < nr_nodes; i++) {
		node = page_address(node_pages[i]);
		GT("{\"t\":\"nodefinal\",\"name\":\"%s\",\"pfn\":%lu,\"flags\":%u,\"obj_pfn\":%llu,\"node_pfn\":%llu}",
		   node->name, page_to_pfn(node_pages[i]), node->flags, node->obj_pfn, node->node_pfn);
	}
}

/* ---- pkram= from the saved command line ---- */

static int parse_pkram_param(const char *cmdline, unsigned long *pfn)
{
	const char *p = cmdline;
	char val[32];
	size_t n;

	while ((p = strstr(p, "pkram=")) != NULL) {
		if (p == cmdline || p[-1] == ' ') {
			p += 6;
			n = strcspn(p, " \n");
			if (n >= sizeof(val))
				return -EINVAL;
			memcpy(val, p, n);
			val[n] = 0;
			return kstrtoul(val, 16, pfn);
		}
		p += 6;
	}
	return -ENOENT;
}

static int get_sb_pfn(unsigned long *pfn)
{
	static char buf[4096];
	struct file *f;
	loff_t pos = 0;
	ssize_t n;

	if (cmdline_addr) {
		/* cmdline_addr is &saved_command_line, a char * */
		const char *scl = *(const char **)cmdline_addr;

		GT("{\"t\":\"cmdline_src\",\"src\":\"saved_command_line\"}");
		return parse_pkram_param(scl, pfn);
	}
	f = filp_open("/proc/cmdline", O_RDONLY, 0);
	if (IS_ERR(f))
		return PTR_ERR(f);
	n = kernel_read(f, buf, sizeof(buf) - 1, &pos);
	filp_close(f, NULL);
	if (n < 0)
		return n;
	buf[n] = 0;
	GT("{\"t\":\"cmdline_src\",\"src\":\"/proc/cmdline\"}");
	return parse_pkram_param(buf, pfn);
}

static int __init pkram_fixture_init(void)
{
	char *spec, *cur, *tok;
	int err;

	if (rev != 1 && rev != 2)
		return -EINVAL;
	err = get_sb_pfn(&pkram_sb_pfn);
	if (err) {
		pr_err("pkram_fixture: no usable pkram= on the command line: %d\n", err);
		return err;
	}
	pkram_sb = memremap(PFN_PHYS(pkram_sb_pfn), PAGE_SIZE, MEMREMAP_WB);
	if (!pkram_sb)
		return -ENOMEM;
	GT("{\"t\":\"start\",\"rev\":%d,\"sb_pfn\":%lu,\"paging_levels\":%d,\"direct_map\":%d}",
	   rev, pkram_sb_pfn, pgtable_l5_enabled() ? 5 : 4,
	   pkram_sb == pfn_to_kaddr(pkram_sb_pfn));
	if (rev == 2) {
		preserved = vzalloc(BITS_TO_LONGS(PRESERVED_MAX_PFN) * sizeof(long));
		if (!preserved)
			return -ENOMEM;
	}

	spec = kstrdup(mounts, GFP_KERNEL);
	if (!spec)
		return -ENOMEM;
	cur = spec;
	while ((tok = strsep(&cur, ",")) != NULL) {
		char *path = strchr(tok, ':');

		if (!path)
			continue;
		*path++ = 0;
		err = save_mount(tok, path);
		if (err)
			break;
	}
	kfree(spec);
	if (!err && test_bytes)
		err = save_test_bytes();
	if (err) {
		pr_err("pkram_fixture: save failed: %d\n", err);
		GT("{\"t\":\"error\",\"err\":%d}", err);
		return 0;	/* stay loaded: keep every reference taken */
	}
	__pkram_reboot();
	GT("{\"t\":\"done\"}");
	return 0;
}
module_init(pkram_fixture_init);
/* no module_exit: the module can't be unloaded, the references stay */
