#!/bin/sh
echo "hello from the CI image (${1:-world})"
