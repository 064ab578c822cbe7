package org.sandcell.plugin;

import com.google.gson.Gson;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.reflect.TypeToken;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.StreamObserver;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.lang.reflect.Type;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.sandcell.ppp.v1.Completed;
import org.sandcell.ppp.v1.Failed;
import org.sandcell.ppp.v1.HealthRequest;
import org.sandcell.ppp.v1.HealthResponse;
import org.sandcell.ppp.v1.InitRequest;
import org.sandcell.ppp.v1.InitResponse;
import org.sandcell.ppp.v1.InvokeEvent;
import org.sandcell.ppp.v1.InvokeRequest;
import org.sandcell.ppp.v1.PluginWorkerGrpc;

/**
 * Serves one Java plugin over PPP: {@code java org.sandcell.plugin.PluginHost --plugin /plugin
 * --socket /conn/ppp.sock}. The plugin's class is the manifest's {@code entrypoint}.
 */
public final class PluginHost extends PluginWorkerGrpc.PluginWorkerImplBase {
    private static final Gson GSON = new Gson();
    private static final Type MAP = new TypeToken<Map<String, Object>>() {}.getType();
    private final Plugin plugin;

    PluginHost(Plugin plugin) {
        this.plugin = plugin;
    }

    @Override
    public void init(InitRequest request, StreamObserver<InitResponse> response) {
        if (!request.getPluginName().isEmpty() && !request.getPluginName().equals(plugin.name())) {
            response.onError(Status.FAILED_PRECONDITION
                    .withDescription("this worker serves " + plugin.name() + ", not " + request.getPluginName())
                    .asRuntimeException());
            return;
        }
        response.onNext(InitResponse.newBuilder().setPluginName(plugin.name())
                .setPluginVersion(plugin.version()).setLanguage("java")
                .setRuntime("Java " + Runtime.version() + " grpc-java").build());
        response.onCompleted();
    }

    @Override
    public void health(HealthRequest request, StreamObserver<HealthResponse> response) {
        response.onNext(HealthResponse.newBuilder().setStatus(HealthResponse.Status.SERVING).build());
        response.onCompleted();
    }

    @Override
    public void invoke(InvokeRequest request, StreamObserver<InvokeEvent> events) {
        Map<String, Object> input;
        try {
            input = GSON.fromJson(request.getInputJson().isEmpty() ? "{}" : request.getInputJson(), MAP);
        } catch (JsonParseException | IllegalStateException bad) {
            events.onError(Status.INVALID_ARGUMENT.withDescription("input_json must be a JSON object: "
                    + bad.getMessage()).asRuntimeException());
            return;
        }
        events.onNext(run(input, new Context(events)));
        events.onCompleted();
    }

    private InvokeEvent run(Map<String, Object> input, Context ctx) {
        try {
            Map<String, Object> output = plugin.invoke(input, ctx);
            String json = GSON.toJson(output);
            return InvokeEvent.newBuilder().setCompleted(Completed.newBuilder().setOutputJson(json)).build();
        } catch (PluginFailure failure) {
            return failed(failure.code(), failure.getMessage(), failure.details());
        } catch (Exception error) {
            StringWriter trace = new StringWriter();
            error.printStackTrace(new PrintWriter(trace));
            return failed("plugin_error", error.toString(), trace.toString());
        }
    }

    private static InvokeEvent failed(String code, String message, String details) {
        return InvokeEvent.newBuilder().setFailed(Failed.newBuilder().setCode(code)
                .setMessage(message == null ? "" : message).setDetails(details)).build();
    }

    public static void main(String[] args) throws Exception {
        Path pluginDir = Path.of(option(args, "--plugin", "/plugin"));
        Path socket = Path.of(option(args, "--socket", "/conn/ppp.sock"));
        JsonObject manifest = GSON.fromJson(Files.readString(pluginDir.resolve("plugin.json")), JsonObject.class);
        String entrypoint = manifest.get("entrypoint").getAsString();
        Plugin plugin = (Plugin) Class.forName(entrypoint).getDeclaredConstructor().newInstance();
        Server server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
                .addService(new PluginHost(plugin)).build().start();
        UnixBridge.serve(socket, server.getPort());
    }

    private static String option(String[] args, String name, String fallback) {
        for (int i = 0; i + 1 < args.length; i++) {
            if (args[i].equals(name)) {
                return args[i + 1];
            }
        }
        return fallback;
    }
}
