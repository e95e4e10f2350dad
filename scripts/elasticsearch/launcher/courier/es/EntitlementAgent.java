package courier.es;

import java.lang.instrument.Instrumentation;

/**
 * The Java agent that Elasticsearch 9 attaches to itself at boot to install its entitlement
 * checks. The server passes the name of its initializer class as the agent argument; this
 * agent only hands it the Instrumentation. Built by scripts/elasticsearch/fetch.sh because the
 * server's own agent jar is not published to Maven Central.
 */
public final class EntitlementAgent {
    private EntitlementAgent() {}

    public static void agentmain(String initializerClass, Instrumentation inst) throws Exception {
        Class.forName(initializerClass).getMethod("initialize", Instrumentation.class).invoke(null, inst);
    }
}
