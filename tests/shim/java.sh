#!/usr/bin/env bash
# The JVM under the launcher: HotSpot keeps each thread's identity in
# thread-local variables, so the shim runs its threads as OS threads
# (preload/thread.c, note J) and says so in one line.  `java -version`
# and a small program with threads, sleeps and loopback sockets must print
# what they print natively.  Skipped (exit 77) when no java is installed.
. "$(dirname "$0")/lib.sh"
command -v java >/dev/null || { echo "SKIP: no java"; exit 77; }
note='kudzu: libjvm.so is loaded: its threads run as OS threads'

java -version > "$tmp/native" 2>&1 || fail "java -version fails natively"
timeout -s KILL 60 "$KZ" -- java -version > "$tmp/kudzu" 2>&1 || { cat "$tmp/kudzu"; fail "java -version exited $?"; }
[ "$(grep -c "^$note" "$tmp/kudzu")" = 1 ] || { cat "$tmp/kudzu"; fail "no one line on stderr"; }
grep -v "^$note" "$tmp/kudzu" | diff "$tmp/native" - || fail "java -version prints something else"

cat > "$tmp/Echo.java" <<'JAVA'
import java.io.*;
import java.net.*;
import java.util.*;

// Four client threads each exchange lines with a server thread per
// connection over loopback, sleeping between lines.
public class Echo {
  public static void main(String[] args) throws Exception {
    ServerSocket server = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
    Thread acceptor = new Thread(() -> {
      try {
        for (int i = 0; i < 4; i++) {
          Socket s = server.accept();
          new Thread(() -> {
            try (s; BufferedReader in = new BufferedReader(new InputStreamReader(s.getInputStream()));
                 PrintWriter out = new PrintWriter(s.getOutputStream(), true)) {
              for (String line; (line = in.readLine()) != null; ) out.println("echo " + line);
            } catch (IOException e) { throw new UncheckedIOException(e); }
          }).start();
        }
      } catch (IOException e) { throw new UncheckedIOException(e); }
    });
    acceptor.start();
    List<Thread> clients = new ArrayList<>();
    int[] ok = new int[4];
    for (int c = 0; c < 4; c++) {
      final int id = c;
      Thread t = new Thread(() -> {
        try (Socket s = new Socket(InetAddress.getLoopbackAddress(), server.getLocalPort());
             BufferedReader in = new BufferedReader(new InputStreamReader(s.getInputStream()));
             PrintWriter out = new PrintWriter(s.getOutputStream(), true)) {
          for (int i = 0; i < 3; i++) {
            Thread.sleep(20);
            out.println(id + "." + i);
            if (in.readLine().equals("echo " + id + "." + i)) ok[id]++;
          }
        } catch (Exception e) { throw new RuntimeException(e); }
      });
      clients.add(t);
      t.start();
    }
    for (Thread t : clients) t.join();
    acceptor.join();
    server.close();
    System.out.println("answers " + Arrays.toString(ok));
  }
}
JAVA
java "$tmp/Echo.java" > "$tmp/native" 2>&1 || { cat "$tmp/native"; fail "Echo fails natively"; }
timeout -s KILL 60 "$KZ" -- java "$tmp/Echo.java" > "$tmp/kudzu" 2>&1 || { cat "$tmp/kudzu"; fail "Echo exited $?"; }
grep -v "^$note" "$tmp/kudzu" | diff "$tmp/native" - || fail "Echo prints something else"
cat "$tmp/native"
echo PASS
