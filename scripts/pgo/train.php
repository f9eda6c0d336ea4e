<?php
// The PGO training workload (scripts/pgo/train.sh). Two roles in one file:
//  - `php train.php --drive PHP DOCROOT ROUNDS PATHS REJECT INI...` starts PHP's built-in
//    server on DOCROOT, sends it ROUNDS rounds of GET requests to PATHS (a comma-separated
//    list), then stops it with SIGINT (it exits normally, so its profile is written). A
//    response that fails, is empty or holds REJECT (an error page's marker) counts as
//    failed; more than a tenth failed fails the run;
//  - as a page (`/train.php?case=...`) it is a request of ordinary application work.

if (PHP_SAPI === 'cli' && ($argv[1] ?? '') === '--drive') {
    [, , $php, $docroot, $given_rounds, $paths, $reject] = $argv + array_fill(0, 7, '');
    $rounds = (int) $given_rounds;
    $paths = array_filter(explode(',', $paths));
    if ($rounds < 1 || $paths === [] || $reject === '' || !is_dir($docroot)) {
        fwrite(STDERR, "train.php: usage: --drive PHP DOCROOT ROUNDS PATH,PATH... REJECT INI... (got docroot '$docroot', rounds '$given_rounds', reject '$reject')\n");
        exit(2);
    }
    $ini = array_slice($argv, 7);
    $probe = stream_socket_server('tcp://127.0.0.1:0', $errno, $errstr);
    if ($probe === false) {
        fwrite(STDERR, "train.php: no free port: $errstr\n");
        exit(1);
    }
    $address = stream_socket_get_name($probe, false);
    fclose($probe);
    $server = proc_open(array_merge([$php], $ini, ['-S', $address, '-t', $docroot]), [
        0 => ['file', '/dev/null', 'r'], 1 => ['file', '/dev/null', 'w'], 2 => ['file', '/dev/null', 'w'],
    ], $pipes);
    $get = function (string $path) use ($address): string {
        $body = @file_get_contents("http://$address$path");
        return $body === false ? '' : $body;
    };
    // Up when the first path answers.
    for ($i = 0; $i < 100 && $get($paths[0]) === ''; $i++) {
        usleep(100000);
    }
    $failed = 0;
    for ($round = 0; $round < $rounds; $round++) {
        foreach ($paths as $path) {
            $body = $get($path);
            if ($body === '' || str_contains($body, $reject)) {
                $failed++;
            }
        }
    }
    proc_terminate($server, 2); // SIGINT: the built-in server ends its loop and exits
    $status = proc_close($server);
    $sent = $rounds * count($paths);
    echo "train.php: $docroot: $sent requests, $failed failed or empty; server exit $status\n";
    exit($failed > $sent / 10 ? 1 : 0);
}

switch ($_GET['case'] ?? 'hello') {
    case 'json':
        $rows = [];
        for ($i = 0; $i < 100; $i++) {
            $rows[] = ['id' => $i, 'name' => "item $i", 'price' => $i * 1.25, 'tags' => ['a', 'b'], 'ok' => $i % 2 === 0];
        }
        header('Content-Type: application/json');
        $json = json_encode(['rows' => $rows, 'count' => count($rows)]);
        echo json_encode(json_decode($json, true));
        break;
    case 'text':
        $words = explode(' ', str_repeat('the quick brown fox jumps over the lazy dog ', 40));
        $counts = array_count_values($words);
        arsort($counts);
        $text = implode(' ', array_map('ucfirst', $words));
        $text = preg_replace_callback('/\b(\w)(\w*)\b/', fn ($m) => strtoupper($m[1]) . $m[2], $text);
        $text = str_replace(['Quick', 'Lazy'], ['<b>quick</b>', '<i>lazy</i>'], $text);
        $data = unserialize(serialize(['counts' => $counts, 'when' => date('c', 1700000000)]));
        printf("<p>%s</p><pre>%s</pre>\n", htmlspecialchars(mb_substr($text, 0, 200)), var_export($data, true));
        echo sprintf('%05.2f %s %d', 3.14159, md5($text), crc32($text)), "\n";
        break;
    default:
        echo "Hello, world!";
}
