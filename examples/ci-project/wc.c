#include <ctype.h>
#include "wc.h"

size_t count_words(const char *buf, size_t len, int *in_word)
{
    size_t words = 0;
    for (size_t i = 0; i < len; i++) {
        if (isspace((unsigned char)buf[i])) {
            *in_word = 0;
        } else if (!*in_word) {
            *in_word = 1;
            words++;
        }
    }
    return words;
}
