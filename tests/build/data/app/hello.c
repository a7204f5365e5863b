#include <stdio.h>

int main(void)
{
    puts("hi from a multi-stage build");
    return 0;
}
