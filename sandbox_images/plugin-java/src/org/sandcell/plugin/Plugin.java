package org.sandcell.plugin;

import java.util.Map;

/**
 * A Sandcell plugin in Java: a name, a version and {@link #invoke}. The input is the JSON
 * object the gateway validated against the manifest's input schema (numbers arrive as
 * Double); the output must be a JSON-serialisable map matching the output schema.
 *
 * <pre>
 * public final class AddNumbers implements Plugin {
 *     public String name() { return "add_numbers"; }
 *     public String version() { return "1.0.0"; }
 *     public Map&lt;String, Object&gt; invoke(Map&lt;String, Object&gt; input, Context ctx) {
 *         ctx.progress(100, "done");
 *         return Map.of("result", (Double) input.get("operand1") + (Double) input.get("operand2"));
 *     }
 * }
 * </pre>
 */
public interface Plugin {
    String name();

    String version();

    Map<String, Object> invoke(Map<String, Object> input, Context ctx) throws Exception;
}
