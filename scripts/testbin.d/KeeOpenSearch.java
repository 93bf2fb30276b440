// A single-node OpenSearch for the tests, from the Maven Central jars (no distribution
// tarball, no security plugin): the core server plus the two modules the exporter's
// index template and queries need (netty4 HTTP transport, common analysis).
//
//   java -cp "libs/*:classes" KeeOpenSearch HOME HTTP_PORT TRANSPORT_PORT
//
// Listens on 127.0.0.1 only; data and logs under HOME. Prints "KEE-OPENSEARCH-STARTED
// http://127.0.0.1:PORT" once the node has started; stops on SIGTERM (shutdown hook).
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;
import java.util.concurrent.CountDownLatch;

import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.node.Node;
import org.opensearch.transport.Netty4Plugin;

public final class KeeOpenSearch {

    /** Node's constructor that takes classpath plugins is protected. */
    static final class EmbeddedNode extends Node {
        EmbeddedNode(Environment env) {
            super(env, List.of(Netty4Plugin.class, CommonAnalysisPlugin.class), true);
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 1 && args[0].equals("--version")) {
            System.out.println(org.opensearch.Version.CURRENT);
            return;
        }
        if (args.length != 3) {
            System.err.println("usage: KeeOpenSearch HOME HTTP_PORT TRANSPORT_PORT");
            System.exit(2);
        }
        Path home = Paths.get(args[0]).toAbsolutePath();
        Path config = home.resolve("config");
        Files.createDirectories(config);
        Settings settings = Settings.builder()
            .put("cluster.name", "kee-test")
            .put("node.name", "kee-opensearch")
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("network.host", "127.0.0.1")
            .put("http.port", args[1])
            .put("transport.port", args[2])
            .put("discovery.type", "single-node")
            // a shared test machine's disk may be fuller than the default watermarks allow
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .build();
        Node node = new EmbeddedNode(new Environment(settings, config));
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "kee-opensearch-shutdown"));
        node.start();
        System.out.println("KEE-OPENSEARCH-STARTED http://127.0.0.1:" + args[1]);
        System.out.flush();
        stopped.await();  // the node's threads are daemons: main keeps the JVM up
    }
}
