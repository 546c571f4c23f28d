#!/usr/bin/env bash
# The test command: builds the whole solution (warnings are errors) and runs every test project.
set -euo pipefail
cd "$(dirname "$0")"
dotnet build Daxfs.Branching.sln -c Release
dotnet test Daxfs.Branching.sln -c Release --no-build
