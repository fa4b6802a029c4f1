/* i386 system calls through int $0x80 from a 64-bit process (the compat entry a seccomp filter
   must also cover): int80 NR [ARG...]; an ARG "s:TEXT" passes a pointer to TEXT (copied below
   4 GiB, where a static non-PIE binary keeps its data). Prints the raw return value. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char strings[6][256];

int main(int argc, char **argv) {
    long a[6] = {0};
    if (argc < 2) return 2;
    long nr = strtol(argv[1], NULL, 0);
    for (int i = 2; i < argc && i < 8; i++) {
        if (strncmp(argv[i], "s:", 2) == 0) {
            strncpy(strings[i - 2], argv[i] + 2, 255);
            a[i - 2] = (long)(unsigned long)strings[i - 2];
        } else {
            a[i - 2] = strtol(argv[i], NULL, 0);
        }
    }
    long ret;
    __asm__ volatile("push %%rbp\n\tmov %7, %%rbp\n\tint $0x80\n\tpop %%rbp"
                     : "=a"(ret)
                     : "a"(nr), "b"(a[0]), "c"(a[1]), "d"(a[2]), "S"(a[3]), "D"(a[4]), "m"(a[5])
                     : "memory");
    printf("%ld\n", (long)(int)ret);
    return 0;
}
