package org.sandcell.plugin;

/** Throw from a plugin to fail the invocation with a chosen code (a PPP Failed event). */
public class PluginFailure extends Exception {
    private final String code;
    private final String details;

    public PluginFailure(String code, String message, String details) {
        super(message);
        this.code = code;
        this.details = details;
    }

    public PluginFailure(String code, String message) {
        this(code, message, "");
    }

    public String code() {
        return code;
    }

    public String details() {
        return details;
    }
}
