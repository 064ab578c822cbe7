package org.sandcell.plugins;

import java.util.LinkedHashMap;
import java.util.Map;
import org.sandcell.plugin.Context;
import org.sandcell.plugin.Plugin;

/** multiply_numbers: the original platform's multiplication, as a Sandcell Java plugin. */
public final class MultiplyNumbers implements Plugin {
    @Override
    public String name() {
        return "multiply_numbers";
    }

    @Override
    public String version() {
        return "1.0.0";
    }

    @Override
    public Map<String, Object> invoke(Map<String, Object> input, Context ctx) {
        ctx.progress(0, "received operands");
        double operand1 = ((Number) input.get("operand1")).doubleValue();
        double operand2 = ((Number) input.get("operand2")).doubleValue();
        Map<String, Object> output = new LinkedHashMap<>();
        output.put("result", operand1 * operand2);
        output.put("operation", "multiply");
        output.put("operand1", operand1);
        output.put("operand2", operand2);
        ctx.progress(100, "done");
        return output;
    }
}
