package org.sandcell.plugin;

import io.grpc.stub.StreamObserver;
import org.sandcell.ppp.v1.InvokeEvent;
import org.sandcell.ppp.v1.Log;
import org.sandcell.ppp.v1.Progress;

/** What a plugin reports while it works: progress (0-100) and log lines, sent at once. */
public final class Context {
    private final StreamObserver<InvokeEvent> events;

    Context(StreamObserver<InvokeEvent> events) {
        this.events = events;
    }

    public synchronized void progress(double percent, String message) {
        double clamped = Math.max(0.0, Math.min(100.0, percent));
        events.onNext(InvokeEvent.newBuilder()
                .setProgress(Progress.newBuilder().setPercent(clamped).setMessage(message)).build());
    }

    public synchronized void log(String level, String message) {
        events.onNext(InvokeEvent.newBuilder()
                .setLog(Log.newBuilder().setLevel(level).setMessage(message)).build());
    }
}
