<?php

// Without Composer (Debian's php-symfony-* packages): require this file beside Debian's
// autoloaders. With Composer, composer.json's "autoload" does the same.
spl_autoload_register(static function (string $class): void {
    $prefix = 'TokioPhp\\SymfonyRuntime\\';
    if (str_starts_with($class, $prefix)) {
        $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, \strlen($prefix))) . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
});
