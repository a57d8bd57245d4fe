// switchyard: the thin executable. Everything else lives in lib/.
#include "cli/cli.h"

int main(int argc, char** argv) { return switchyard::cli::Main(argc, argv); }
