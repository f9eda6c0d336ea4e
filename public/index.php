<?php
// The default document root of tokio_php. Replace public/ with your application, or set
// DOCUMENT_ROOT to it.
header('Content-Type: text/html; charset=utf-8');
$info = [
    'Server' => $_SERVER['SERVER_SOFTWARE'] ?? 'tokio_php',
    'PHP' => PHP_VERSION . (PHP_ZTS ? ' (thread-safe)' : ''),
    'SAPI' => php_sapi_name(),
    'OPcache' => function_exists('opcache_get_status') && (opcache_get_status(false)['opcache_enabled'] ?? false) ? 'on' : 'off',
    'Request' => $_SERVER['REQUEST_METHOD'] . ' ' . $_SERVER['REQUEST_URI'],
];
?>
<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>tokio_php</title></head>
<body>
<h1>tokio_php is serving PHP</h1>
<table>
<?php foreach ($info as $name => $value): ?>
<tr><th align="left"><?= htmlspecialchars($name) ?></th><td><?= htmlspecialchars((string) $value) ?></td></tr>
<?php endforeach; ?>
</table>
</body>
</html>
