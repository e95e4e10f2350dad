package org.elasticsearch.io.ansi;

import java.util.function.Supplier;

/**
 * The server loads a class of this name from lib/tools/ansi-console to find a terminal to
 * print to. A node started by scripts/elasticsearch/node.sh is detached and has no terminal,
 * so this stand-in (the real one is not published to Maven Central) supplies none.
 */
public final class AnsiConsoleLoader implements Supplier<Object> {
    @Override
    public Object get() {
        return null;
    }
}
