#!/usr/bin/env bash
# Prints a greeting for the name given (default: World).
name="${1:-World}"
echo "Hello, ${name}?"
