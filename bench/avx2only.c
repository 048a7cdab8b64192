/* LD_PRELOAD shim: the process sees an AVX2-only x86-64 CPU (no AVX-512, VNNI, AMX).
 *
 * Libraries pick their kernels from CPUID at run time (ONNX Runtime's MLAS, PyTorch/oneDNN,
 * MKL), and ONNX Runtime has no setting to limit that. With CPUID faulting
 * (arch_prctl ARCH_SET_CPUID 0, Linux >= 4.12, CPU flag cpuid_fault) every CPUID
 * instruction traps; the SIGSEGV handler runs the real CPUID with faulting briefly off,
 * clears the AVX-512/VNNI/AMX/AVX10 bits and steps over the instruction. Only the kernel
 * choice is emulated: the cores, caches and clocks stay this machine's. The setting is per
 * thread, inherited by threads and fork, reset by execve (the child loads the shim again).
 *
 *   gcc -O2 -shared -fPIC -o /tmp/avx2only.so bench/avx2only.c
 *   LD_PRELOAD=/tmp/avx2only.so python ...
 * If CPUID faulting is unavailable the process runs unchanged and says so on stderr.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))

static long set_cpuid(int on) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, on); }

static void mask(unsigned leaf, unsigned sub, unsigned *a, unsigned *b, unsigned *c,
                 unsigned *d) {
    if (leaf == 7 && sub == 0) {
        /* EBX: avx512f dq ifma pf er cd bw vl */
        *b &= ~(BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31));
        /* ECX: avx512_vbmi, vbmi2, vnni, bitalg, vpopcntdq */
        *c &= ~(BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14));
        /* EDX: 4vnniw 4fmaps vp2intersect, amx_bf16 avx512_fp16 amx_tile amx_int8 */
        *d &= ~(BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25));
    } else if (leaf == 7 && sub == 1) {
        /* EAX: avx_vnni avx512_bf16 amx_fp16 avx_ifma; EDX: avx_vnni_int8 avx_ne_convert
         * amx_complex avx_vnni_int16 avx10 */
        *a &= ~(BIT(4) | BIT(5) | BIT(21) | BIT(23));
        *d &= ~(BIT(4) | BIT(5) | BIT(8) | BIT(10) | BIT(19));
    } else if (leaf == 0xd && sub == 0) {
        /* XSAVE state components: no opmask/ZMM (5-7) or AMX tile (17-18) state. */
        *a &= ~(BIT(5) | BIT(6) | BIT(7) | BIT(17) | BIT(18));
    } else if (leaf == 0x1d || leaf == 0x1e || leaf == 0x24) {
        *a = *b = *c = *d = 0; /* AMX tile and AVX10 information */
    }
}

static void on_segv(int sig, siginfo_t *si, void *ctx) {
    (void)si;
    ucontext_t *uc = ctx;
    greg_t *g = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)g[REG_RIP];
    if (ip[0] == 0x0f && ip[1] == 0xa2) {
        unsigned leaf = (unsigned)g[REG_RAX], sub = (unsigned)g[REG_RCX], a, b, c, d;
        set_cpuid(1);
        __cpuid_count(leaf, sub, a, b, c, d);
        set_cpuid(0);
        mask(leaf, sub, &a, &b, &c, &d);
        g[REG_RAX] = a, g[REG_RBX] = b, g[REG_RCX] = c, g[REG_RDX] = d;
        g[REG_RIP] += 2;
        return;
    }
    signal(sig, SIG_DFL); /* a real fault: return and take it */
}

__attribute__((constructor)) static void avx2only(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    if (set_cpuid(0) != 0)
        fprintf(stderr, "avx2only: CPUID faulting unavailable; the real CPU is seen\n");
}
