package org.sandcell.testplugins;

import java.util.Map;
import org.sandcell.plugin.Context;
import org.sandcell.plugin.Plugin;

/** Misbehaves on request, for the Java half of the plugin runtime's crash and timeout tests. */
public final class JavaTestPlugin implements Plugin {
    @Override
    public String name() {
        return "sandcell_java_test_plugin";
    }

    @Override
    public String version() {
        return "0.1.0";
    }

    @Override
    public Map<String, Object> invoke(Map<String, Object> input, Context ctx) throws Exception {
        double seconds = input.containsKey("seconds") ? ((Number) input.get("seconds")).doubleValue() : 60.0;
        if ("crash".equals(input.get("mode"))) {
            ctx.progress(10, "about to crash");
            Thread.sleep(200); // let the progress event leave before the JVM dies
            Runtime.getRuntime().halt(3);
        }
        ctx.progress(1, "sleeping");
        Thread.sleep((long) (seconds * 1000));
        ctx.progress(100, "done");
        return Map.of("slept", seconds);
    }
}
