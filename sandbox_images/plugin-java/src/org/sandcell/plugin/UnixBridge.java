package org.sandcell.plugin;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Serves the gateway's UNIX socket by relaying each connection to the gRPC server on the
 * container's loopback. Debian's Netty has no native epoll library, so grpc-java cannot
 * listen on a UNIX socket itself; the JDK can. The container still has no network.
 */
final class UnixBridge {
    private UnixBridge() {}

    static void serve(Path socket, int port) throws IOException {
        Files.deleteIfExists(socket);
        ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(socket));
        while (true) {
            SocketChannel client = server.accept();
            SocketChannel upstream = SocketChannel.open(new InetSocketAddress("127.0.0.1", port));
            upstream.socket().setTcpNoDelay(true);
            pump(client, upstream);
            pump(upstream, client);
        }
    }

    private static void pump(SocketChannel from, SocketChannel to) {
        Thread thread = new Thread(() -> {
            ByteBuffer buffer = ByteBuffer.allocateDirect(64 * 1024);
            try {
                while (from.read(buffer) >= 0) {
                    buffer.flip();
                    while (buffer.hasRemaining()) {
                        to.write(buffer);
                    }
                    buffer.clear();
                }
            } catch (IOException closed) {
                // the other side went away: close both below
            }
            try {
                from.close();
                to.close();
            } catch (IOException ignored) {
                // already closed
            }
        }, "uds-bridge");
        thread.setDaemon(true);
        thread.start();
    }
}
