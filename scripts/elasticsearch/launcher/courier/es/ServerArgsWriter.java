package courier.es;

import java.io.BufferedOutputStream;
import java.nio.file.Path;
import java.util.Map;

import org.elasticsearch.bootstrap.ServerArgs;
import org.elasticsearch.common.io.stream.OutputStreamStreamOutput;
import org.elasticsearch.common.settings.KeyStoreWrapper;
import org.elasticsearch.common.settings.SecureString;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.node.InternalSettingsPreparer;

/**
 * Writes the startup arguments that the Elasticsearch server process reads from its standard
 * input, as the server CLI (not published to Maven Central) would: the node settings resolved
 * from CONFIG_DIR/elasticsearch.yml, an empty keystore (created in CONFIG_DIR on first use) and
 * "daemonize", so the server reads nothing more from stdin once started.
 *
 * Usage: ServerArgsWriter ES_HOME CONFIG_DIR > server-args.bin
 */
public final class ServerArgsWriter {
    private ServerArgsWriter() {}

    public static void main(String[] argv) throws Exception {
        if (argv.length != 2) {
            System.err.println("usage: ServerArgsWriter ES_HOME CONFIG_DIR");
            System.exit(2);
        }
        Path home = Path.of(argv[0]).toAbsolutePath();
        Path config = Path.of(argv[1]).toAbsolutePath();
        Environment env = InternalSettingsPreparer.prepareEnvironment(
            Settings.builder().put("path.home", home.toString()).build(),
            Map.of(),
            config,
            () -> "courier-es"
        );
        KeyStoreWrapper secrets = KeyStoreWrapper.bootstrap(config, () -> new SecureString(new char[0]));
        ServerArgs args = new ServerArgs(true, false, null, secrets, env.settings(), env.configDir(), env.logsDir());
        try (OutputStreamStreamOutput out = new OutputStreamStreamOutput(new BufferedOutputStream(System.out))) {
            args.writeTo(out);
        }
    }
}
