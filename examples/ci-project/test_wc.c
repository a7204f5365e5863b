#include <assert.h>
#include <stdio.h>
#include <string.h>
#include "wc.h"

static size_t wc(const char *s)
{
    int in_word = 0;
    return count_words(s, strlen(s), &in_word);
}

int main(void)
{
    int in_word = 0;
    assert(wc("") == 0);
    assert(wc("   ") == 0);
    assert(wc("one") == 1);
    assert(wc(" one  two\tthree\n") == 3);
    /* a word split across two chunks counts once */
    assert(count_words("hel", 3, &in_word) + count_words("lo world", 8, &in_word) == 2);
    puts("test_wc: ok");
    return 0;
}
