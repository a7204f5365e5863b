#include <stdio.h>
#include "wc.h"

int main(void)
{
    char buf[65536];
    size_t n, total = 0;
    int in_word = 0;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0)
        total += count_words(buf, n, &in_word);
    printf("%zu\n", total);
    return 0;
}
